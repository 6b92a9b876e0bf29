"""A Hessian that is not positive definite is refused by every solver.

The fault sweep's case: an untrained torch MLP (smallest eigenvalue about
-200), which direct refused naming ``damping`` while cg and arnoldi
returned numbers.
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skinfluence import InfluenceEstimator
from skinfluence.solvers import ArnoldiSolver, CGSolver, HessianOperator, LiSSASolver


def _indefinite(n=20, negative=-5.0, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    vals = np.linspace(1.0, 10.0, n)
    vals[3] = negative
    return (Q * vals) @ Q.T


SOLVERS = [CGSolver(tol=1e-10), ArnoldiSolver(rank=25), ArnoldiSolver(rank=5),
           LiSSASolver(depth=500)]
IDS = ["cg", "arnoldi-full", "arnoldi-partial", "lissa"]


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_indefinite_operator_is_refused(solver):
    H = _indefinite(25, negative=-20.0)  # the largest magnitude: Arnoldi sees it
    with pytest.raises(ValueError, match=r"not positive definite: curvature "
                       r"-[0-9.]+.*damping=0\. .*Set damping > [0-9.]+"):
        solver.fit(HessianOperator.from_dense(H))
        solver.solve(np.random.default_rng(1).standard_normal((25, 3)))


def test_cg_curvature_names_the_damping_that_would_do():
    # The Rayleigh quotient met bounds the smallest eigenvalue from above:
    # the damping it asks for is necessary (not always sufficient).
    H = _indefinite(20, negative=-5.0)
    with pytest.raises(ValueError) as err:
        CGSolver(tol=1e-10).fit(HessianOperator.from_dense(H)).solve(np.ones((20, 1)))
    need = float(str(err.value).split("damping > ")[1].split()[0])
    assert 0 < need <= 5.0 + 1e-9
    assert "at least" in str(err.value)


def test_positive_definite_damping_is_accepted():
    H = _indefinite(20, negative=-5.0)
    for solver in (CGSolver(tol=1e-10, damping=6.0), ArnoldiSolver(damping=6.0)):
        solver.fit(HessianOperator.from_dense(H))
        x = solver.solve(np.ones(20))
        np.testing.assert_allclose((H + 6 * np.eye(20)) @ x, np.ones(20), atol=1e-8)


@pytest.fixture(scope="module")
def untrained_mlp():
    torch = pytest.importorskip("torch")
    from skinfluence.torch import TorchModel

    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16.0, y[:300]
    net = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 10)).double()
    return TorchModel(net).fit(X, y), X, y


@pytest.mark.parametrize("method", ["direct", "cg", "arnoldi", "lissa"])
def test_untrained_network_is_refused_naming_damping_and_ggn(untrained_mlp, method):
    model, X, y = untrained_mlp
    inf = InfluenceEstimator(model, method=method, random_state=0)
    with pytest.raises(ValueError, match=r"not positive definite.*damping.*"
                       r"curvature='ggn'"):
        inf.fit(X, y)
        inf.score_influence(X[:5], y[:5])


def test_untrained_network_ggn_is_accepted(untrained_mlp):
    from sklearn.base import clone

    model, X, y = untrained_mlp
    ggn = clone(model).set_params(curvature="ggn", weight_decay=1e-3)
    ggn.module_ = model.module_
    ggn.fit(X, y)
    out = InfluenceEstimator(ggn, method="cg", tol=1e-10).fit(X, y).score_influence(
        X[:5], y[:5])
    assert np.all(np.isfinite(out))
