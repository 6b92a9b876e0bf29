"""Influence estimates against actual leave-one-out retraining on real data.

Truth is :func:`skinfluence.validation.loo_influence`: one tight, warm-started
refit per left-out row.  Rows checked are the 20 most influential and 20
random ones, against every test row.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence

from ._cases import CASES, LEAST_SQUARES, SMOOTH, fitted


def _rows(I, n_train, n=40, seed=0):
    """The most influential rows and random ones."""
    top = np.argsort(-np.abs(I).max(axis=0))[: n // 2]
    rest = np.setdiff1d(np.arange(n_train), top)
    rand = np.random.default_rng(seed).choice(rest, n - len(top), replace=False)
    return np.concatenate([top, rand])


def _agreement(predicted, actual):
    """Pearson r and least-squares slope of actual on predicted."""
    p, a = predicted.ravel(), actual.ravel()
    return np.corrcoef(p, a)[0, 1], np.polyfit(p, a, 1)[0]


def _quiet(fn):
    # SGD's averaged iterate is near, not at, the optimum: tolerated here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn()


def _ids(cases):
    return [c[0] for c in cases]


@pytest.mark.parametrize("case", LEAST_SQUARES, ids=_ids(LEAST_SQUARES))
def test_newton_is_exact_for_least_squares(case):
    model, (Xtr, ytr, Xte, yte), sw = fitted(case)
    inf = _quiet(lambda: InfluenceEstimator(model, estimate="newton").fit(
        Xtr, ytr, sample_weight=sw))
    I = inf.score_influence(Xte, yte)
    rows = _rows(I, len(ytr))
    actual = loo_influence(model, Xtr, ytr, Xte, yte, rows, sample_weight=sw)
    np.testing.assert_allclose(I[:, rows], actual, rtol=1e-6,
                               atol=1e-9 * np.abs(actual).max())


NEWTON = [c for c in SMOOTH if c not in LEAST_SQUARES]


@pytest.mark.parametrize("case", NEWTON, ids=_ids(NEWTON))
def test_newton_matches_leave_one_out(case):
    model, (Xtr, ytr, Xte, yte), sw = fitted(case)
    inf = _quiet(lambda: InfluenceEstimator(model, estimate="newton").fit(
        Xtr, ytr, sample_weight=sw))
    I = inf.score_influence(Xte, yte)
    rows = _rows(I, len(ytr))
    actual = loo_influence(model, Xtr, ytr, Xte, yte, rows, sample_weight=sw)
    r, slope = _agreement(I[:, rows], actual)
    assert r >= 0.995, (r, slope)
    assert 0.95 <= slope <= 1.05, (r, slope)


FIRST_ORDER = [c for c in CASES if "hinge" not in c[0]]


@pytest.mark.parametrize("case", FIRST_ORDER, ids=_ids(FIRST_ORDER))
def test_influence_is_the_reweighting_derivative(case):
    model, (Xtr, ytr, Xte, yte), sw = fitted(case)
    inf = _quiet(lambda: InfluenceEstimator(model).fit(Xtr, ytr, sample_weight=sw))
    I = inf.score_influence(Xte, yte)
    rows = _rows(I, len(ytr), n=6)
    # Central difference: removing and adding a fraction eps of row j.
    eps = 1e-4
    down = loo_influence(model, Xtr, ytr, Xte, yte, rows, sample_weight=sw,
                         epsilon=eps)
    up = loo_influence(model, Xtr, ytr, Xte, yte, rows, sample_weight=sw,
                       epsilon=-eps)
    derivative = (down + up) / 2
    np.testing.assert_allclose(I[:, rows], derivative, rtol=1e-3,
                               atol=1e-3 * np.abs(derivative).max())


@pytest.mark.parametrize("case", FIRST_ORDER, ids=_ids(FIRST_ORDER))
def test_influence_correlates_with_leave_one_out(case):
    model, (Xtr, ytr, Xte, yte), sw = fitted(case)
    inf = _quiet(lambda: InfluenceEstimator(model).fit(Xtr, ytr, sample_weight=sw))
    I = inf.score_influence(Xte, yte)
    rows = _rows(I, len(ytr))
    actual = loo_influence(model, Xtr, ytr, Xte, yte, rows, sample_weight=sw)
    r, slope = _agreement(I[:, rows], actual)
    assert r >= 0.95, (r, slope)
