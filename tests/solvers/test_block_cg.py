"""Block CG: one Krylov space for all right-hand sides, exact as direct."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceEstimator
from skinfluence.solvers import CGSolver, HessianOperator


def _spd(n, log_cond, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.logspace(0, log_cond, n)) @ Q.T


def _operator(H, diagonal=True):
    return HessianOperator(H.shape[0], lambda V: H @ V,
                           diagonal=np.diag(H).copy() if diagonal else None)


@pytest.mark.parametrize("pre", [None, "nystrom"])
@pytest.mark.parametrize("diagonal", [True, False])
def test_block_cg_equals_direct_in_fewer_iterations(pre, diagonal):
    H = _spd(300, 4)
    B = np.random.default_rng(1).standard_normal((300, 40))
    exact = np.linalg.solve(H, B)
    its = {}
    for block in (True, False):
        solver = CGSolver(tol=1e-10, block=block, preconditioner=pre, rank=10)
        X = solver.fit(_operator(H, diagonal)).solve(B)
        np.testing.assert_allclose(X, exact, rtol=1e-7, atol=1e-9 * np.abs(exact).max())
        assert solver.info_["residual"] <= 1e-10
        its[block] = solver.info_["iterations"]
    assert its[True] * 5 < its[False]


def test_block_cg_columns_of_any_scale_and_dependent_ones():
    # Columns 1e-8 and 1e8 in norm, one repeated, one zero: each meets tol
    # against its own norm, and the repeat (a spanned direction) is dropped
    # from the search block rather than breaking it down.
    H = _spd(80, 3)
    rng = np.random.default_rng(2)
    B = rng.standard_normal((80, 5))
    B[:, 0] *= 1e-8
    B[:, 1] *= 1e8
    B[:, 3] = B[:, 2]
    B[:, 4] = 0.0
    solver = CGSolver(tol=1e-10, block=True).fit(_operator(H))
    X = solver.solve(B)
    rel = np.linalg.norm(H @ X - B, axis=0) / np.maximum(np.linalg.norm(B, axis=0),
                                                         1e-300)
    assert np.all(rel[:4] <= 1e-10) and np.all(X[:, 4] == 0)
    np.testing.assert_array_equal(X[:, 2], X[:, 3])


def test_block_cg_refuses_an_indefinite_block():
    H = _spd(30, 2)
    H -= 3.0 * np.eye(30)  # eigenvalues from -2 to 97
    with pytest.raises(ValueError, match="not positive definite.*block of search"):
        CGSolver(block=True).fit(HessianOperator(30, lambda V: H @ V)).solve(
            np.random.default_rng(0).standard_normal((30, 4)))


def test_block_cg_through_the_estimator_with_a_null_space(digits):
    # Unpenalised softmax intercepts: H is singular along one direction,
    # projected out as for the other solvers.
    Xtr, ytr, Xte, yte = digits
    model = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000)
    model.fit(Xtr[:400], ytr[:400])
    ref = InfluenceEstimator(model).fit(Xtr[:400], ytr[:400]).score_influence(Xte, yte)
    inf = InfluenceEstimator(model, method="cg", tol=1e-11,
                             solver_params={"block": True}).fit(Xtr[:400], ytr[:400])
    out = inf.score_influence(Xte, yte)
    assert inf.solver_info_["block"] is True
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max())
