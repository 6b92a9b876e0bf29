"""One scoring engine for both families: a torch logistic regression is the GLM.

The same network as a TorchModel and as scikit-learn's LogisticRegression,
scored through the same chunked, parallel scoring module: every method and
every output agrees to 1e-10 of the largest score, whatever the chunking,
n_jobs or top_k.
"""

import numpy as np
import pytest
from sklearn import config_context
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator

torch = pytest.importorskip("torch")

from skinfluence.torch import TorchModel  # noqa: E402

METHODS = {
    "direct": {},
    "cg": {"tol": 1e-13},
    "cg-columns": {"tol": 1e-13, "solver_params": {"block": False}},
    "arnoldi": {"solver_params": {"rank": 10**6}},
}


def _pair(load, C=0.5):
    X, y = load(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    Xtr, ytr, Xte, yte = X[:-12], y[:-12], X[-12:], y[-12:]
    clf = LogisticRegression(fit_intercept=False, C=C, tol=1e-12,
                             max_iter=10000).fit(Xtr, ytr)
    net = torch.nn.Linear(X.shape[1], clf.coef_.shape[0], bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.as_tensor(clf.coef_))
    model = TorchModel(net, weight_decay=1 / (C * len(ytr))).fit(Xtr, ytr)
    return model, clf, Xtr, ytr, Xte, yte


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(b).max())


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("load", [load_breast_cancer, load_iris],
                         ids=["binary", "multinomial"])
def test_torch_logistic_is_the_glm_for_every_method_and_output(load, name):
    model, clf, Xtr, ytr, Xte, yte = _pair(load)
    method = name.split("-")[0]
    kw = {"method": method, **METHODS[name]}
    est = InfluenceEstimator(model, **kw).fit(Xtr, ytr)
    ref = InfluenceEstimator(clf, **kw).fit(Xtr, ytr)
    _close(est.score_influence(Xte, yte), ref.score_influence(Xte, yte))
    _close(est.transform(Xte), ref.transform(Xte))
    _close(est.self_influence(), ref.self_influence())
    _close(est.influence_on_params(Xte, yte), ref.influence_on_params(Xte, yte))
    for k in (5, -5):
        idx, vals = est.score_influence(Xte, yte, top_k=k)
        idx0, vals0 = ref.score_influence(Xte, yte, top_k=k)
        np.testing.assert_array_equal(idx, idx0)
        _close(vals, vals0)


def test_torch_scores_are_chunked_and_parallel_like_the_glms():
    # A working_memory of 0.01 MB: one training row per chunk, two jobs,
    # top-k streamed over the chunks; all equal to the one-chunk result.
    model, _, Xtr, ytr, Xte, yte = _pair(load_breast_cancer)
    est = InfluenceEstimator(model).fit(Xtr, ytr)
    full = est.score_influence(Xte, yte)
    with config_context(working_memory=0.01):
        est.set_params(n_jobs=2)
        # (equal up to the rounding of a different blocking of the products)
        np.testing.assert_allclose(est.score_influence(Xte, yte), full, rtol=1e-12)
        idx, vals = est.score_influence(Xte, yte, top_k=-7)
    order = np.argsort(full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(order, axis=1))
    np.testing.assert_allclose(vals, np.take_along_axis(full, idx, axis=1),
                               rtol=1e-12)


def test_torch_progress_bar(capsys):
    pytest.importorskip("tqdm")
    model, _, Xtr, ytr, Xte, yte = _pair(load_breast_cancer)
    est = InfluenceEstimator(model, verbose=1).fit(Xtr, ytr)
    with config_context(working_memory=0.01):
        est.score_influence(Xte, yte)
    assert f"Scoring {len(ytr)} training rows" in capsys.readouterr().err


@pytest.mark.parametrize("directional_max", [64, 0], ids=["forward-mode", "chunks"])
def test_wide_network_paths_equal_the_cached_gradients(monkeypatch, directional_max):
    # Gradients too large to cache (forced here): a few test rows are
    # scored by forward-mode passes over the training rows, many by
    # chunks of per-row gradients; both equal the cached contraction.
    from skinfluence import _torch_path

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 6)), rng.integers(0, 3, 120)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.Tanh(),
                              torch.nn.Linear(7, 3)).double()
    model = TorchModel(net, weight_decay=0.5).fit(X, y)
    est = InfluenceEstimator(model, method="direct").fit(X, y)
    ref = est.score_influence(X[:9], y[:9]), est.transform(X[:9])
    monkeypatch.setattr(_torch_path, "TRAIN_GRAD_BYTES", 0)
    monkeypatch.setattr(_torch_path, "DIRECTIONAL_MAX_ROWS", directional_max)
    wide = InfluenceEstimator(model, method="direct").fit(X, y)
    expected = (_torch_path.DirectionalRows if directional_max
                else _torch_path.DenseRows)
    assert isinstance(wide._engine.train_rows(wide, 9), expected)
    for out, r in zip((wide.score_influence(X[:9], y[:9]), wide.transform(X[:9])),
                      ref):
        np.testing.assert_allclose(out, r, rtol=1e-10, atol=1e-13)


def test_ekfac_one_pass_expectation_through_the_estimator():
    # expectation="mc": one random combination of output directions per row
    # (unbiased), seeded by random_state; close to the exact expectation.
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(150, 6)), rng.integers(0, 3, 150)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 3)).double()
    model = TorchModel(net, weight_decay=0.1, curvature="ggn").fit(X, y)
    exact = InfluenceEstimator(model, method="ekfac").fit(X, y).score_influence(
        X[:4], y[:4])
    kw = dict(method="ekfac", random_state=0, solver_params={"expectation": "mc"})
    mc = InfluenceEstimator(model, **kw).fit(X, y).score_influence(X[:4], y[:4])
    again = InfluenceEstimator(model, **kw).fit(X, y).score_influence(X[:4], y[:4])
    np.testing.assert_array_equal(mc, again)
    assert not np.array_equal(mc, exact)
    assert min(spearmanr(a, b)[0] for a, b in zip(mc, exact)) > 0.9
