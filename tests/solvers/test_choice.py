"""method="auto" chooses by cost and memory; the dual direct solve is exact."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from skinfluence import InfluenceEstimator
from skinfluence.solvers import DIRECT_MAX_PARAMS, _choice, resolve_method


def _text(n_docs=300, n_features=2**12, seed=0, n_classes=2):
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(3000)])
    freq = 1.0 / np.arange(1, vocab.size + 1)
    docs, y = [], []
    for _ in range(n_docs):
        c = rng.integers(n_classes)
        words = rng.choice(vocab.size, rng.integers(20, 60), p=freq / freq.sum())
        words = np.r_[words, rng.integers(50 + 40 * c, 90 + 40 * c, 3)]
        docs.append(" ".join(vocab[words]))
        y.append(c)
    return docs, np.array(y), HashingVectorizer(n_features=n_features)


def test_auto_small_dense_is_primal_direct(digits):
    Xtr, ytr, _, _ = digits
    model = LogisticRegression(C=0.5, max_iter=2000).fit(Xtr[:400], ytr[:400])
    inf = InfluenceEstimator(model).fit(Xtr[:400], ytr[:400])
    # 650 parameters, 400 rows: the primal Hessian is the cheaper factor.
    assert inf.method_ == "direct" and inf.solver_info_["form"] == "primal"
    choice = inf.solver_info_["choice"]
    others = min(choice["dual_flops"], choice["cg_flops_estimate"])
    assert choice["primal_flops"] < others
    assert choice["reason"].startswith("direct (primal)")


def test_auto_wide_sparse_is_dual_direct():
    docs, y, vec = _text()
    pipe = make_pipeline(vec, LogisticRegression(C=10.0, tol=1e-10)).fit(docs, y)
    inf = InfluenceEstimator(pipe).fit(docs, y)
    # 4097 parameters, 300 rows: the 300 x 300 kernel, no iterations.
    assert inf.method_ == "direct" and inf.solver_info_["form"] == "dual"
    assert "iterations" not in inf.solver_info_
    assert inf.solver_info_["choice"]["reason"].startswith("direct (dual)")


def test_auto_memory_limited_falls_back_to_cg(monkeypatch):
    docs, y, vec = _text()
    pipe = make_pipeline(vec, LogisticRegression(C=10.0, tol=1e-10)).fit(docs, y)
    # Neither the 4097^2 Hessian nor the 300^2 kernel fits in 100 kB.
    monkeypatch.setattr(_choice, "memory_budget", lambda: 1e5)
    inf = InfluenceEstimator(pipe).fit(docs, y)
    assert inf.method_ == "cg" and inf.solver_info_["method"] == "cg"
    assert "memory budget" in inf.solver_info_["choice"]["reason"]
    # A budget between the two forms' sizes keeps the exact dual solve.
    monkeypatch.setattr(_choice, "memory_budget", lambda: 1e7)
    assert InfluenceEstimator(pipe).fit(docs, y).solver_info_["form"] == "dual"


def test_auto_dense_20000_parameters_is_direct(monkeypatch):
    # The cost model alone (nothing is factorised): 20000 dense features and
    # 30000 rows on a 24 GiB machine's budget.
    class Gram:
        Z = np.broadcast_to(np.zeros(1), (30000, 20000))
        D = np.ones((1, 1, 1))
        n_outputs = 1

        def split(self, *a):
            return None

    monkeypatch.setattr(_choice, "memory_budget", lambda: 0.5 * 24 * 2**30)
    method, form, record = _choice.choose("auto", 20000, Gram())
    assert (method, form) == ("direct", "primal")
    assert record["primal_bytes"] == 2 * 8 * 20000**2


def test_auto_newton_counts_the_leverage_solves(monkeypatch):
    # The cost model alone: 20000 dense features, 2000 rows, no dual form.
    # cg's 100 right-hand sides look cheaper than factorising, but Newton's
    # leverage blocks add a solve per training row, which the factor's
    # inverse gives for n p^2.
    class Gram:
        Z = np.broadcast_to(np.zeros(1), (2000, 20000))
        D = np.ones((1, 1, 1))
        n_outputs = 1

        def split(self, *a):
            return None

    monkeypatch.setattr(_choice, "memory_budget", lambda: 0.5 * 24 * 2**30)
    method, _, record = _choice.choose("auto", 20000, Gram())
    assert method == "cg"
    method, form, record = _choice.choose("auto", 20000, Gram(), newton=True)
    assert (method, form) == ("direct", "primal")
    assert record["cg_flops_estimate"] == 100 * (100 + 2000) * 4 * 2000 * 20000
    assert record["primal_flops"] < record["cg_flops_estimate"]


def test_torch_like_operators_keep_the_parameter_rule():
    assert resolve_method("auto", DIRECT_MAX_PARAMS) == "direct"
    assert resolve_method("auto", DIRECT_MAX_PARAMS + 1) == "cg"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_form_is_validated(digits):
    Xtr, ytr, _, _ = digits
    model = LogisticRegression(C=np.inf, max_iter=3000).fit(Xtr[:200], ytr[:200])
    with pytest.raises(ValueError, match="must be 'primal' or 'dual'"):
        InfluenceEstimator(model, method="direct", solver_params={"form": "x"}).fit(
            Xtr[:200], ytr[:200])
    with pytest.raises(ValueError, match="applies to method='direct'"):
        InfluenceEstimator(model, method="cg", solver_params={"form": "dual"}).fit(
            Xtr[:200], ytr[:200])
    # No penalty: every feature is free, so there is no dual form.
    with pytest.raises(ValueError, match="does not apply"):
        InfluenceEstimator(model, method="direct", damping=0.0,
                           solver_params={"form": "dual"}).fit(Xtr[:200], ytr[:200])


def _models():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    # Wide: 120 rows for 650 softmax parameters, 50 for 65 binary ones.
    Xtr, ytr, Xte, yte = X[:120], y[:120], X[1500:1520], y[1500:1520]
    binary = (Xtr[:50], ytr[:50] % 2, Xte, yte % 2)
    multi = (Xtr, ytr, Xte, yte)
    reg = (Xtr[:50], ytr[:50].astype(float), Xte, yte.astype(float))
    lr = dict(C=0.5, tol=1e-12, max_iter=10000)
    return {
        "binary": (LogisticRegression(**lr), binary, 0.0),
        "softmax": (LogisticRegression(**lr), multi, 0.0),
        "softmax-damped": (LogisticRegression(**lr), multi, 0.3),
        "balanced": (LogisticRegression(class_weight="balanced", **lr), multi, 0.0),
        "liblinear": (LogisticRegression(solver="liblinear", C=0.5, tol=1e-12),
                      binary, 0.0),
        "no-intercept": (LogisticRegression(fit_intercept=False, **lr), multi, 0.0),
        "ovr-svm": (LinearSVC(C=0.5, tol=1e-12, max_iter=100000), multi, 0.0),
        "ridge": (Ridge(alpha=1.0), reg, 0.0),
        "ols-damped": (LinearRegression(), reg, 1.0),
    }


MODELS = _models()


@pytest.mark.parametrize("estimate", ["influence", "newton"])
@pytest.mark.parametrize("name", list(MODELS))
def test_dual_equals_primal_direct(name, estimate):
    model, (Xtr, ytr, Xte, yte), damping = MODELS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Xtr, ytr)
    kw = dict(method="direct", estimate=estimate, damping=damping)
    primal = InfluenceEstimator(model, **kw, solver_params={"form": "primal"})
    dual = InfluenceEstimator(model, **kw, solver_params={"form": "dual"})
    primal.fit(Xtr, ytr)
    dual.fit(Xtr, ytr)
    assert dual.solver_info_["form"] == "dual"
    assert primal.n_params_ > len(ytr)  # wide: fewer rows than parameters
    pairs = [
        (primal.score_influence(Xte, yte), dual.score_influence(Xte, yte)),
        (primal.self_influence(), dual.self_influence()),
        (primal.self_influence(Xte, yte), dual.self_influence(Xte, yte)),
        (primal.influence_on_params(Xtr[:15], ytr[:15]),
         dual.influence_on_params(Xtr[:15], ytr[:15])),
        (primal.transform(Xte), dual.transform(Xte)),
    ]
    for ref, out in pairs:
        np.testing.assert_allclose(out, ref, rtol=1e-10,
                                   atol=1e-10 * np.abs(ref).max())
    assert dual.solver_info_["max_residual"] < 1e-10


@pytest.mark.parametrize("n_classes", [2, 3])
def test_dual_on_sparse_text_equals_primal(n_classes):
    docs, y, vec = _text(n_docs=200, n_features=2**10, n_classes=n_classes)
    pipe = make_pipeline(vec, LogisticRegression(C=10.0, tol=1e-12, max_iter=5000))
    pipe.fit(docs[:150], y[:150])
    kw = dict(method="direct", estimate="newton")
    primal = InfluenceEstimator(pipe, **kw, solver_params={"form": "primal"})
    dual = InfluenceEstimator(pipe, **kw, solver_params={"form": "dual"})
    primal.fit(docs[:150], y[:150])
    dual.fit(docs[:150], y[:150])
    assert sp.issparse(dual._Z)
    for ref, out in [
        (primal.score_influence(docs[150:], y[150:]),
         dual.score_influence(docs[150:], y[150:])),
        (primal.self_influence(), dual.self_influence()),
    ]:
        np.testing.assert_allclose(out, ref, rtol=1e-10,
                                   atol=1e-10 * np.abs(ref).max())
