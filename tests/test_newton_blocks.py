"""The Newton estimate's fast algebra equals the per-row solves it replaces."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.svm import LinearSVC

from skinfluence import InfluenceEstimator, _newton
from skinfluence.solvers import _direct
from skinfluence.solvers._direct import cholesky_upper, inverse_from_cholesky


class _SolveOnly:
    """The direct solver seen only through ``solve``: the per-row path."""

    def __init__(self, solver):
        self.solve = solver.solve


def _fitted(name, digits):
    Xtr, ytr, Xte, yte = digits
    Xtr, ytr = Xtr[:300], ytr[:300]
    models = {
        "binary": (LogisticRegression(C=0.5, tol=1e-10), ytr % 2, yte % 2),
        "multinomial": (LogisticRegression(C=0.5, tol=1e-10, max_iter=5000),
                        ytr, yte),
        "one-vs-rest": (LinearSVC(C=0.1, tol=1e-10, max_iter=100000), ytr, yte),
        "class-weighted": (LogisticRegression(C=0.5, tol=1e-10, max_iter=5000,
                                              class_weight="balanced"), ytr, yte),
        "sgd-ovr": (SGDClassifier(loss="log_loss", alpha=0.01, tol=1e-8,
                                  max_iter=5000, random_state=0), ytr, yte),
    }
    model, y, y_test = models[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Xtr, y)
        inf = InfluenceEstimator(model, method="direct", estimate="newton").fit(
            Xtr, y)
    return inf, Xtr, y, Xte, y_test


NAMES = ["binary", "multinomial", "one-vs-rest", "class-weighted", "sgd-ovr"]


@pytest.mark.parametrize("name", NAMES)
def test_leverage_blocks_equal_per_row_solves(name, digits):
    inf, *_ = _fitted(name, digits)
    K = inf._adapter.n_outputs
    fast = _newton.diag_blocks(inf._solver, inf._Z, K)
    slow = _newton.diag_blocks(_SolveOnly(inf._solver), inf._Z, K, batch_size=37)
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12 * np.abs(slow).max())
    np.testing.assert_allclose(fast, inf._A, rtol=0, atol=0)  # what fit stored


@pytest.mark.parametrize("name", NAMES)
def test_test_side_newton_rows_equal_solves(name, digits):
    inf, _, _, Xte, yte = _fitted(name, digits)
    Z = inf._adapter.features(Xte)
    fast = inf._engine._left_newton(inf, Z)
    solver = inf._solver
    inf._solver = _SolveOnly(solver)
    try:
        slow = inf._engine._left_newton(inf, Z)
    finally:
        inf._solver = solver
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12 * np.abs(slow).max())


@pytest.mark.parametrize("name", ["binary", "multinomial", "one-vs-rest"])
def test_loss_change_equals_loss_difference(name, digits):
    inf, _, _, Xte, yte = _fitted(name, digits)
    a = inf._adapter
    Z, y_enc, raw = inf._engine._prepare(inf, Xte, yte)
    shift = np.random.default_rng(0).normal(scale=3.0, size=(*raw.shape, 7))
    got = a.loss.loss_change(y_enc, raw, shift)
    for c in range(7):
        expected = a.loss_from_raw(y_enc, raw + shift[:, :, c]) - a.loss_from_raw(
            y_enc, raw)
        np.testing.assert_allclose(got[:, c], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("threads", [1, None])  # one BLAS thread, or all
def test_inverse_from_cholesky_is_the_inverse(threads, monkeypatch):
    monkeypatch.setattr(_direct, "lapack_threads", lambda n: threads)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((1200, 1200))
    H = A @ A.T + 1200 * np.eye(1200)
    U = cholesky_upper(H)
    assert np.all(np.tril(U, -1) == 0)
    np.testing.assert_allclose(U.T @ U, H, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(inverse_from_cholesky(U), np.linalg.inv(H),
                               rtol=1e-10, atol=1e-15)


def test_lapack_threads_small_matrices_take_one():
    assert _direct.lapack_threads(100) == 1
    assert _direct.lapack_threads(5000) in (1, None)
