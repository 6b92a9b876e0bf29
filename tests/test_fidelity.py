"""Influence estimates against actual leave-one-out retraining."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence


def _rows(I, n_train, n=40, seed=0):
    """The most influential rows and random ones, as the checks use."""
    top = np.argsort(-np.abs(I).max(axis=0))[: n // 2]
    rest = np.setdiff1d(np.arange(n_train), top)
    rand = np.random.default_rng(seed).choice(rest, n - len(top), replace=False)
    return np.concatenate([top, rand])


@pytest.mark.parametrize("model", [LinearRegression(), Ridge(alpha=1.0),
                                   Ridge(alpha=10.0, fit_intercept=False)])
def test_newton_is_exact_for_least_squares(model, diabetes):
    Xtr, ytr, Xte, yte = diabetes
    model.fit(Xtr, ytr)
    inf = InfluenceEstimator(model, estimate="newton").fit(Xtr, ytr)
    I = inf.score_influence(Xte, yte)
    rows = _rows(I, len(ytr))
    actual = loo_influence(model, Xtr, ytr, Xte, yte, rows)
    np.testing.assert_allclose(I[:, rows], actual, rtol=1e-6, atol=1e-9 * np.abs(
        actual).max())
