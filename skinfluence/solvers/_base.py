"""What every inverse-Hessian solver provides, and the operator it sees."""

import functools

import numpy as np


class HessianOperator:
    """A symmetric positive semi-definite operator known by its products.

    Parameters
    ----------
    n_params : int
        Size of the operator.
    matmat : callable
        ``matmat(V)`` returns ``H @ V`` for V of shape (n_params, k).
    diagonal : ndarray of shape (n_params,), default=None
        ``diag(H)``, for preconditioning.
    sample : callable, default=None
        ``sample(rng)`` returns a ``matmat`` of an unbiased estimate of H on
        a random mini-batch of rows, for stochastic solvers.
    gram : GramStructure, default=None
        The GLM form ``Λ + Ψᵀ D Ψ`` of H, for the dual direct solve and the
        cost-based choice of solver.
    """

    def __init__(self, n_params, matmat, *, diagonal=None, sample=None, gram=None):
        self.n_params = n_params
        self.matmat = matmat
        self.diagonal = diagonal
        self.sample = sample
        self.gram = gram

    @classmethod
    def from_dense(cls, H):
        H = np.asarray(H)
        return cls(H.shape[0], functools.partial(np.matmul, H),
                   diagonal=np.diag(H).copy())


class Solver:
    """Solve ``(H + damping I) X = B`` for batches of right-hand sides.

    ``fit(H, null_space=None)`` prepares the solver, H a dense array or a
    :class:`HessianOperator`; ``solve(B)`` takes B of shape (n_params, k) and
    returns X of the same shape; ``info_`` records what was done. Solvers
    never see models or data, only the operator.
    """

    def __init__(self, *, damping=0.0):
        self.damping = damping

    def _operator(self, H):
        return H if isinstance(H, HessianOperator) else HessianOperator.from_dense(H)

    def _project(self, X):
        N = getattr(self, "null_space_", None)
        return X if N is None else X - N @ (N.T @ X)
