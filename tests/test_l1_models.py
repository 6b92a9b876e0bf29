"""l1 models on their active set: Lasso, ElasticNet, l1 LogisticRegression.

Truth is scikit-learn's own refit without the row, tight, on the rows whose
removal keeps the support (the active set is held fixed by design): the
Newton estimate must match it (exactly for Lasso, whose active-set
objective is least squares plus a linear term), and the first-order one
must be the derivative under a lowered weight.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.linear_model import ElasticNet, Lasso, LassoCV, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence

from ._cases import load

TIGHT = dict(tol=1e-14, max_iter=1_000_000)


def _native_refits(model, X, y, Xte, yte, rows, sw, loss):
    """Test-loss changes of scikit-learn's refits without each row, and
    whether each refit kept the support."""
    base = clone(model).fit(X, y, sample_weight=sw)
    L0 = loss(base, Xte, yte)
    changes, kept = [], []
    for j in rows:
        keep = np.arange(len(y)) != j
        refit = clone(model).fit(X[keep], y[keep], sample_weight=sw[keep])
        changes.append(loss(refit, Xte, yte) - L0)
        kept.append(np.array_equal(refit.coef_ != 0, base.coef_ != 0))
    return base, np.array(changes).T, np.array(kept)


def _squared(model, X, y):
    return (y - model.predict(X)) ** 2


def _log_loss(model, X, y):
    p = model.predict_proba(X)[np.arange(len(y)), y]
    return -np.log(p)


@pytest.mark.parametrize("make, exact", [
    (lambda: Lasso(alpha=0.05, **TIGHT), True),
    (lambda: ElasticNet(alpha=0.05, l1_ratio=0.5, **TIGHT), False),
], ids=["Lasso", "ElasticNet"])
def test_newton_follows_refits_that_keep_the_support(make, exact):
    Xtr, ytr, Xte, yte = load("diabetes_std")
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(ytr))
    rows = np.arange(0, len(ytr), 20)
    base, actual, kept = _native_refits(make(), Xtr, ytr, Xte, yte, rows, sw,
                                        _squared)
    assert kept.mean() > 0.8  # most removals keep the support here
    est = InfluenceEstimator(base, estimate="newton").fit(Xtr, ytr, sample_weight=sw)
    np.testing.assert_array_equal(est.active_set_, np.flatnonzero(base.coef_))
    S = est.score_influence(Xte, yte)[:, rows]
    if exact:  # least squares on the active set: the step is the refit
        np.testing.assert_allclose(S[:, kept], actual[:, kept], rtol=1e-8,
                                   atol=1e-10 * np.abs(actual).max())
    else:  # the penalty's share of the Hessian, w_j / W, is neglected
        r = np.corrcoef(S[:, kept].ravel(), actual[:, kept].ravel())[0, 1]
        assert r >= 0.9999, r
    # First order: the derivative under a lowered weight.
    first = InfluenceEstimator(base).fit(Xtr, ytr, sample_weight=sw)
    eps = loo_influence(base, Xtr, ytr, Xte, yte, rows[:8], sample_weight=sw,
                        epsilon=1e-6)
    np.testing.assert_allclose(first.score_influence(Xte, yte)[:, rows[:8]], eps,
                               rtol=1e-4, atol=1e-6 * np.abs(eps).max())


@pytest.mark.parametrize("solver", ["saga", "liblinear"])
def test_l1_logistic_regression_follows_refits_that_keep_the_support(solver):
    Xtr, ytr, Xte, yte = load("cancer")
    Xtr, ytr = Xtr[:300], ytr[:300]
    sw = np.ones(len(ytr))
    # saga converges slowly: looser, on fewer refits.
    tol, step = (1e-12, 25) if solver == "liblinear" else (1e-9, 100)
    model = LogisticRegression(l1_ratio=1.0, C=0.5, solver=solver, tol=tol,
                               max_iter=100_000)
    rows = np.arange(0, len(ytr), step)
    base, actual, kept = _native_refits(model, Xtr, ytr, Xte, yte, rows, sw,
                                        _log_loss)
    assert kept.mean() > 0.5
    est = InfluenceEstimator(base, estimate="newton").fit(Xtr, ytr)
    assert est.stationarity_ < 1e-2, est.stationarity_
    S = est.score_influence(Xte, yte)[:, rows]
    r = np.corrcoef(S[:, kept].ravel(), actual[:, kept].ravel())[0, 1]
    assert r >= 0.995, r
    first = InfluenceEstimator(base).fit(Xtr, ytr)
    eps = loo_influence(base, Xtr, ytr, Xte, yte, rows[:6], epsilon=1e-6)
    np.testing.assert_allclose(first.score_influence(Xte, yte)[:, rows[:6]], eps,
                               rtol=1e-3, atol=1e-5 * np.abs(eps).max())


def test_lasso_cv_is_the_lasso_at_its_alpha():
    Xtr, ytr, Xte, yte = load("diabetes_std")
    cv = LassoCV(alphas=[0.01, 0.05, 0.2], cv=3, **TIGHT).fit(Xtr, ytr)
    plain = Lasso(alpha=cv.alpha_, **TIGHT).fit(Xtr, ytr)
    S = InfluenceEstimator(cv).fit(Xtr, ytr).score_influence(Xte, yte)
    np.testing.assert_allclose(S, InfluenceEstimator(plain).fit(
        Xtr, ytr).score_influence(Xte, yte), rtol=1e-6, atol=1e-9 * np.abs(S).max())


def test_dense_sparse_and_pipeline_agree():
    Xtr, ytr, Xte, yte = load("diabetes_std")
    Xp, Xpt = np.maximum(Xtr, 0.0), np.maximum(Xte, 0.0)
    dense = Lasso(alpha=0.02, **TIGHT).fit(Xp, ytr)
    sparse = Lasso(alpha=0.02, **TIGHT).fit(sp.csr_matrix(Xp), ytr)
    S = InfluenceEstimator(dense).fit(Xp, ytr).score_influence(Xpt, yte)
    S_sp = InfluenceEstimator(sparse).fit(sp.csr_matrix(Xp), ytr).score_influence(
        sp.csr_matrix(Xpt), yte)
    np.testing.assert_allclose(S_sp, S, rtol=1e-6, atol=1e-9 * np.abs(S).max())
    pipe = make_pipeline(StandardScaler(), Lasso(alpha=0.02, **TIGHT)).fit(
        2 * Xtr + 1, ytr)
    ours = InfluenceEstimator(pipe).fit(2 * Xtr + 1, ytr).score_influence(
        2 * Xte + 1, yte)
    ref = InfluenceEstimator(pipe[-1]).fit(pipe[0].transform(2 * Xtr + 1),
                                           ytr).score_influence(
        pipe[0].transform(2 * Xte + 1), yte)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_a_moved_support_is_detected_and_perturbation_refused():
    Xtr, ytr, Xte, yte = load("diabetes_std")
    model = Lasso(alpha=0.05, **TIGHT).fit(Xtr, ytr)
    est = InfluenceEstimator(model).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="derived ones"):
        est.score_influence(Xte, yte, kind="perturbation")
    model.set_params(alpha=0.001).fit(Xtr, ytr)  # a larger support
    with pytest.raises(ValueError, match="parameters changed"):
        est.score_influence(Xte, yte)
    # An empty support leaves the intercept, the mean of y: its influence.
    empty = InfluenceEstimator(Lasso(alpha=100.0), estimate="newton").fit(Xtr, ytr)
    assert empty.n_params_ == 1 and empty.active_set_.size == 0
    rows = np.arange(5)
    np.testing.assert_allclose(
        empty.score_influence(Xte, yte)[:, rows],
        loo_influence(empty.estimator_, Xtr, ytr, Xte, yte, rows), rtol=1e-8)
    with pytest.raises(ValueError, match="no non-zero coefficient and no intercept"):
        InfluenceEstimator(Lasso(alpha=100.0, fit_intercept=False)).fit(Xtr, ytr)
