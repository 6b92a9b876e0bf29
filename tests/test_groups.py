"""group_influence: leaving out whole groups of training rows.

Truth is an exact refit of the model's own objective without the group
(the group's rows at sample weight 0, solved to rounding level); the
first-order estimate is the sum of score_influence's columns.
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator


def _digits(n_classes=3, n=150, seed=0):
    X, y = load_digits(n_class=n_classes, return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    X = StandardScaler().fit_transform(X[order] / 16.0)[:, :20]
    y = y[order]
    return X[:n], y[:n], X[n:n + 12], y[n:n + 12]


def _cancer(n=120):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:, :8]
    return X[:n], y[:n], X[n:n + 10], y[n:n + 10]


def _diabetes(n=100):
    X, y = load_diabetes(return_X_y=True)
    return X[:n], y[:n], X[n:n + 10], y[n:n + 10]


def _tight_logistic(**kw):
    return LogisticRegression(solver="newton-cholesky", tol=1e-14, max_iter=500,
                              **kw)


CASES = {
    "ridge": (_diabetes, lambda: Ridge(alpha=0.3)),
    "logistic-binary": (_cancer, lambda: _tight_logistic(C=0.5)),
    "logistic-multinomial": (_digits, lambda: _tight_logistic(C=0.2)),
    "logistic-balanced": (
        lambda: _digits(seed=1), lambda: _tight_logistic(C=0.2,
                                                         class_weight="balanced")),
}


def _refit_loss_change(model, X, y, Xte, yte, rows):
    """Exact test-loss change when ``rows`` are left out: a refit at weight 0."""
    from skinfluence.models import get_adapter

    w = np.ones(len(y))
    w[rows] = 0.0
    refit = clone(model).fit(X, y, sample_weight=w)
    a, b = (get_adapter(m, y=y, sample_weight=None, n_train=len(y))
            for m in (model, refit))
    Z = a.features(Xte)
    yt = a.encode_y(yte)
    return a.loss_from_raw(yt, b.raw_prediction(Z)) - a.loss_from_raw(
        yt, a.raw_prediction(Z))


def _clusters(X, n_groups=4, seed=0):
    """Coherent groups: rows nearest each of a few random centres."""
    centres = X[np.random.default_rng(seed).choice(len(X), n_groups, replace=False)]
    return np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)


@pytest.mark.parametrize("name", CASES)
def test_group_of_one_row_is_the_row_newton_estimate(name):
    data, make = CASES[name]
    X, y, Xte, yte = data()
    model = make().fit(X, y)
    est = InfluenceEstimator(model, estimate="newton", tol=1e-12).fit(X, y)
    rows = [0, 7, 31]
    masks = np.zeros((len(rows), len(y)), dtype=bool)
    masks[np.arange(len(rows)), rows] = True
    S = est.group_influence(Xte, yte, masks)
    expected = est.score_influence(Xte, yte)[:, rows]
    if name == "logistic-balanced":
        # The row estimate neglects the re-weighting's effect on H, which
        # the group estimate keeps: agreement to that order only.
        np.testing.assert_allclose(S, expected, rtol=0.05,
                                   atol=0.05 * np.abs(expected).max())
    else:
        np.testing.assert_allclose(S, expected, rtol=1e-7,
                                   atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("name", CASES)
def test_newton_steps_converge_to_the_exact_refit(name):
    data, make = CASES[name]
    X, y, Xte, yte = data()
    model = make().fit(X, y)
    est = InfluenceEstimator(model, estimate="newton", tol=1e-12).fit(X, y)
    labels = _clusters(X)
    S = est.group_influence(Xte, yte, labels, n_steps=10)
    assert S.shape == (len(yte), len(np.unique(labels)))
    np.testing.assert_array_equal(est.group_labels_, np.unique(labels))
    for g, label in enumerate(est.group_labels_):
        actual = _refit_loss_change(model, X, y, Xte, yte,
                                    np.flatnonzero(labels == label))
        np.testing.assert_allclose(S[:, g], actual, rtol=1e-8,
                                   atol=1e-8 * np.abs(actual).max())
    # One step is an estimate, and the first-order sum a worse one.
    one = est.group_influence(Xte, yte, labels)
    first = InfluenceEstimator(model).fit(X, y).group_influence(Xte, yte, labels)
    if name != "ridge":
        err = [np.abs(E - S).max() for E in (one, first)]
        assert 0 < err[0] < err[1], err


def test_least_squares_is_exact_in_one_step():
    X, y, Xte, yte = _diabetes()
    model = Ridge(alpha=0.3).fit(X, y)
    est = InfluenceEstimator(model, estimate="newton", tol=1e-12).fit(X, y)
    rng = np.random.default_rng(3)
    masks = rng.random((5, len(y))) < 0.3  # random, overlapping subsets
    S = est.group_influence(Xte, yte, masks)
    for g in range(len(masks)):
        actual = _refit_loss_change(model, X, y, Xte, yte, np.flatnonzero(masks[g]))
        np.testing.assert_allclose(S[:, g], actual, rtol=1e-8,
                                   atol=1e-9 * np.abs(actual).max())


@pytest.mark.parametrize("estimate", ["influence", "newton"])
def test_label_and_boolean_forms_agree(estimate):
    X, y, Xte, yte = _digits()
    est = InfluenceEstimator(_tight_logistic(C=0.2).fit(X, y),
                             estimate=estimate).fit(X, y)
    labels = np.array(["scanner-" + "abcde"[i] for i in _clusters(X, 5)])
    by_label = est.group_influence(Xte, yte, labels)
    names = est.group_labels_
    masks = labels[None, :] == names[:, None]
    np.testing.assert_allclose(est.group_influence(Xte, yte, masks), by_label,
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(est.group_labels_, np.arange(len(names)))
    import scipy.sparse as sp

    np.testing.assert_allclose(
        est.group_influence(Xte, yte, sp.csr_matrix(masks)), by_label,
        rtol=1e-10, atol=1e-14)


def test_first_order_group_is_the_sum_of_row_influences():
    X, y, Xte, yte = _digits()
    est = InfluenceEstimator(_tight_logistic(C=0.2).fit(X, y)).fit(X, y)
    labels = _clusters(X, 6)
    S = est.group_influence(Xte, yte, labels)
    rows = est.score_influence(Xte, yte)
    expected = np.stack([rows[:, labels == g].sum(axis=1) for g in range(6)], 1)
    np.testing.assert_allclose(S, expected, rtol=1e-12, atol=1e-14)
    # top_k over groups: the largest (or smallest) sums, sorted.
    idx, vals = est.group_influence(Xte, yte, labels, top_k=2)
    np.testing.assert_array_equal(idx, np.argsort(-expected, axis=1)[:, :2])
    np.testing.assert_allclose(vals, np.take_along_axis(expected, idx, 1))
    idx, vals = est.group_influence(Xte, yte, labels, top_k=-1)
    np.testing.assert_array_equal(idx[:, 0], np.argmin(expected, axis=1))


def test_first_order_groups_do_not_depend_on_the_chunk_size():
    from sklearn import config_context

    X, y, Xte, yte = _digits()
    est = InfluenceEstimator(_tight_logistic(C=0.2).fit(X, y)).fit(X, y)
    labels = _clusters(X, 6)
    whole = est.group_influence(Xte, yte, labels)
    with config_context(working_memory=0.01):  # chunks of a few rows
        np.testing.assert_allclose(est.group_influence(Xte, yte, labels), whole,
                                   rtol=1e-12, atol=1e-15)


def test_torch_groups_are_sums_of_row_influences():
    torch = pytest.importorskip("torch")
    from skinfluence.torch import TorchModel

    X, y, Xte, yte = _digits(n=60)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 3)).double()
    model = TorchModel(net, weight_decay=0.1).fit(X, y)
    est = InfluenceEstimator(model, method="direct", damping=1e-3).fit(X, y)
    labels = _clusters(X, 3)
    rows = est.score_influence(Xte, yte)
    expected = np.stack([rows[:, labels == g].sum(axis=1) for g in range(3)], 1)
    np.testing.assert_allclose(est.group_influence(Xte, yte, labels), expected,
                               rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------ refusals
def test_refuses_a_group_of_every_row():
    X, y, Xte, yte = _cancer()
    est = InfluenceEstimator(_tight_logistic().fit(X, y)).fit(X, y)
    masks = np.ones((2, len(y)), dtype=bool)
    masks[0, 0] = False
    with pytest.raises(ValueError, match=r"group 1 holds all 120 training rows"):
        est.group_influence(Xte, yte, masks)


@pytest.mark.parametrize("estimate", ["influence", "newton"])
def test_refuses_a_group_that_removes_a_class_under_an_unpenalised_intercept(
        estimate):
    X, y, Xte, yte = _digits()
    est = InfluenceEstimator(_tight_logistic(C=0.2).fit(X, y),
                             estimate=estimate).fit(X, y)
    groups = np.stack([np.arange(len(y)) < 10, y == 2])  # group 1: the twos
    with pytest.raises(ValueError, match=r"group 1 holds every training row "
                                         r"of class 2.*no minimum"):
        est.group_influence(Xte, yte, groups)
    # A penalised intercept (liblinear's) keeps a minimum: no refusal.
    X, y, Xte, yte = _cancer()
    lib = LogisticRegression(solver="liblinear", C=0.2, tol=1e-10).fit(X, y)
    ones = (y == 1)[None, :]
    InfluenceEstimator(lib, estimate=estimate).fit(X, y).group_influence(
        Xte, yte, ones)
    with pytest.raises(ValueError, match=r"group 0 holds every training row of "
                                         r"class 1"):
        InfluenceEstimator(_tight_logistic().fit(X, y), estimate=estimate).fit(
            X, y).group_influence(Xte, yte, ones)


def test_refuses_a_group_without_which_the_model_is_not_identifiable():
    X, y, Xte, yte = _diabetes(n=40)
    est = InfluenceEstimator(LinearRegression().fit(X, y), estimate="newton").fit(
        X, y)
    groups = np.where(np.arange(len(y)) < 32, "most", "few")  # 8 rows, 11 params
    with pytest.raises(ValueError, match=r"group 'most': the objective without its "
                                         r"rows has no unique minimum"):
        est.group_influence(Xte, yte, groups)


@pytest.mark.parametrize("groups, match", [
    (np.zeros(7), r"groups has 7 labels but the estimator was fitted on 120"),
    (np.zeros((2, 120)), r"boolean array of shape \(n_groups, n_train\).*float64"),
    (np.zeros((2, 7), dtype=bool), r"groups has 7 columns"),
    (np.zeros((0, 120), dtype=bool), r"no group"),
    (np.full(120, np.nan), r"NaN"),
])
def test_bad_groups_are_named(groups, match):
    X, y, Xte, yte = _cancer()
    est = InfluenceEstimator(_tight_logistic().fit(X, y)).fit(X, y)
    with pytest.raises(ValueError, match=match):
        est.group_influence(Xte, yte, groups)


def test_bad_steps_and_top_k_are_named():
    X, y, Xte, yte = _cancer()
    labels = np.arange(len(y)) % 4
    est = InfluenceEstimator(_tight_logistic().fit(X, y)).fit(X, y)
    with pytest.raises(ValueError, match=r"n_steps=2 applies to estimate='newton'"):
        est.group_influence(Xte, yte, labels, n_steps=2)
    newton = InfluenceEstimator(_tight_logistic().fit(X, y), estimate="newton").fit(
        X, y)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_steps must be a positive integer"):
            newton.group_influence(Xte, yte, labels, n_steps=bad)
    with pytest.raises(ValueError, match=r"abs\(top_k\)=5 exceeds the number of "
                                         r"groups \(4\)"):
        est.group_influence(Xte, yte, labels, top_k=5)


@pytest.mark.parametrize("name", ["ridge", "logistic-binary", "logistic-multinomial"])
def test_woodbury_and_preconditioned_cg_steps_agree(name, monkeypatch):
    from skinfluence import _groups

    data, make = CASES[name]
    X, y, Xte, yte = data()
    est = InfluenceEstimator(make().fit(X, y), estimate="newton", tol=1e-12).fit(X, y)
    rng = np.random.default_rng(0)
    masks = np.zeros((4, len(y)), dtype=bool)
    for g, size in enumerate([1, 2, 5, 9]):
        masks[g, rng.choice(len(y), size, replace=False)] = True
    calls = []
    step = _groups._woodbury_step
    monkeypatch.setattr(_groups, "_woodbury_step",
                        lambda *a: calls.append(1) or step(*a))
    woodbury = est.group_influence(Xte, yte, masks, n_steps=2)
    assert len(calls) == 4  # every group small enough
    monkeypatch.setattr(_groups, "WOODBURY_MAX_RANK", 0)
    cg = est.group_influence(Xte, yte, masks, n_steps=2)
    assert len(calls) == 4
    np.testing.assert_allclose(woodbury, cg, rtol=1e-8,
                               atol=1e-10 * np.abs(cg).max())


# ------------------------------------------------------------ ground truth
@pytest.mark.parametrize("name", CASES)
def test_loo_influence_refits_groups(name):
    from skinfluence.validation import loo_influence

    data, make = CASES[name]
    X, y, Xte, yte = data()
    model = make().fit(X, y)
    labels = _clusters(X)
    masks = labels[None, :] == np.unique(labels)[:, None]
    actual, info = loo_influence(model, X, y, Xte, yte, masks, return_info=True)
    assert actual.shape == (len(yte), masks.shape[0]) and info["certified"]
    for g in range(masks.shape[0]):
        expected = _refit_loss_change(model, X, y, Xte, yte, np.flatnonzero(masks[g]))
        np.testing.assert_allclose(actual[:, g], expected, rtol=1e-7,
                                   atol=1e-9 * np.abs(expected).max())
    # Integer labels through groups=, string labels through train_indices.
    np.testing.assert_allclose(loo_influence(model, X, y, Xte, yte, groups=labels),
                               actual, rtol=1e-12, atol=1e-15)
    named = np.array([f"c{v}" for v in labels])
    np.testing.assert_allclose(loo_influence(model, X, y, Xte, yte, named), actual,
                               rtol=1e-12, atol=1e-15)
    # And the group Newton estimate converges to it.
    est = InfluenceEstimator(model, estimate="newton", tol=1e-12).fit(X, y)
    np.testing.assert_allclose(est.group_influence(Xte, yte, masks, n_steps=10),
                               actual, rtol=1e-7, atol=1e-8 * np.abs(actual).max())


def test_loo_influence_groups_refusals():
    from skinfluence.validation import loo_influence

    X, y, Xte, yte = _digits()
    model = _tight_logistic(C=0.2).fit(X, y)
    with pytest.raises(ValueError, match="not both"):
        loo_influence(model, X, y, Xte, yte, [0], groups=np.zeros(len(y)))
    with pytest.raises(ValueError, match="holds every training row of class 2"):
        loo_influence(model, X, y, Xte, yte, (y == 2)[None, :])
    with pytest.raises(ValueError, match="1-D boolean train_indices is ambiguous"):
        loo_influence(model, X, y, Xte, yte, y == 2)


def test_linear_datamodeling_score():
    from skinfluence.validation import linear_datamodeling_score

    X, y, Xte, yte = _diabetes(n=60)
    ridge = InfluenceEstimator(Ridge(alpha=0.3).fit(X, y), estimate="newton").fit(X, y)
    # Least squares: one Newton step is the refit, so the LDS is 1 exactly.
    scores, pred, actual, kept = linear_datamodeling_score(
        ridge, X, y, Xte, yte, n_subsets=12, random_state=0, return_values=True)
    assert scores.shape == (len(yte),) and np.all(scores == 1.0)
    assert kept.shape == (12, 60) and np.all(kept.sum(axis=1) == 30)
    np.testing.assert_allclose(pred, actual, rtol=1e-8, atol=1e-10 * abs(actual).max())
    # Logistic regression: first order < one Newton step < two, all high.
    X, y, Xte, yte = _cancer()
    model = _tight_logistic(C=0.5).fit(X, y)
    lds = {}
    for estimate, steps in [("influence", 1), ("newton", 1), ("newton", 2)]:
        est = InfluenceEstimator(model, estimate=estimate).fit(X, y)
        lds[estimate, steps] = linear_datamodeling_score(
            est, X, y, Xte, yte, n_subsets=20, n_steps=steps, random_state=0).mean()
    assert lds["influence", 1] < lds["newton", 1] <= lds["newton", 2] <= 1, lds
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        linear_datamodeling_score(est, X, y, Xte, yte, fraction=1.0)
    with pytest.raises(ValueError, match="n_subsets must be an integer >= 2"):
        linear_datamodeling_score(est, X, y, Xte, yte, n_subsets=1)
