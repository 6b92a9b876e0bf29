"""Properties on random small problems (hypothesis), against exact truth."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence

problems = st.tuples(
    st.integers(30, 80),  # n_train
    st.integers(1, 8),  # n_features
    st.integers(0, 2**32 - 1),  # seed
)


def _data(n, p, seed, classify):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + 5, p)) * rng.uniform(0.5, 3.0, p)
    w = rng.standard_normal(p)
    raw = X @ w + rng.standard_normal(n + 5)
    y = (raw > 0).astype(int) if classify else raw
    if classify and len(np.unique(y[:n])) < 2:
        y[0] = 1 - y[0]
    return X[:n], y[:n], X[n:], y[n:]


@settings(max_examples=15, deadline=None)
@given(problems, st.floats(1e-3, 10.0), st.booleans())
def test_newton_is_exact_leave_one_out_for_ridge(problem, alpha, fit_intercept):
    Xtr, ytr, Xte, yte = _data(*problem, classify=False)
    model = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(Xtr, ytr)
    inf = InfluenceEstimator(model, estimate="newton").fit(Xtr, ytr)
    rows = np.arange(0, len(ytr), 7)
    actual = loo_influence(model, Xtr, ytr, Xte, yte, rows)
    np.testing.assert_allclose(inf.score_influence(Xte, yte)[:, rows], actual,
                               rtol=1e-8, atol=1e-10 * np.abs(actual).max())
    # The rank-one algebra of self-influence too: exact LOO residuals.
    np.testing.assert_allclose(
        inf.self_influence()[rows],
        np.diagonal(loo_influence(model, Xtr, ytr, Xtr[rows], ytr[rows], rows)),
        rtol=1e-8, atol=1e-12,
    )


@settings(max_examples=15, deadline=None)
@given(problems, st.floats(0.05, 5.0))
def test_influence_is_the_weight_derivative_for_logistic(problem, C):
    Xtr, ytr, Xte, yte = _data(*problem, classify=True)
    model = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12).fit(
        Xtr, ytr)
    inf = InfluenceEstimator(model).fit(Xtr, ytr)
    rows = np.arange(0, len(ytr), 9)
    eps = 1e-5
    down = loo_influence(model, Xtr, ytr, Xte, yte, rows, epsilon=eps)
    up = loo_influence(model, Xtr, ytr, Xte, yte, rows, epsilon=-eps)
    derivative = (down + up) / 2
    np.testing.assert_allclose(inf.score_influence(Xte, yte)[:, rows], derivative,
                               rtol=1e-4, atol=1e-6 * max(np.abs(derivative).max(),
                                                          1e-8))
