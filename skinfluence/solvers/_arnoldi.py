"""Low-rank inverse from the top eigenpairs of the Hessian (Schioppa et al. 2022)."""

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.utils import check_random_state

from ._base import Solver


class ArnoldiSolver(Solver):
    """``H^-1 ~ U diag(1 / (lambda + damping)) U'`` on the top ``rank`` eigenpairs.

    What it drops: the components of a right-hand side outside the span of
    the top ``rank`` eigenvectors are set to zero. Those low-curvature
    directions are exactly where ``H^-1`` amplifies most, so below full rank
    influence is underestimated, by the share of the gradients that lies
    there; ``info_["captured"]`` reports the share of ``trace(H)`` kept
    (the trace is exact when the operator knows its diagonal, as GLM
    Hessians do, else a Hutchinson estimate, as ``info_["trace"]`` says). At
    full rank the answer is exact. Eigenpairs come from ARPACK's Lanczos
    iteration (``scipy.sparse.linalg.eigsh``) on products with H only.

    Parameters
    ----------
    damping : float, default=0.0
    rank : int, default=None
        Number of eigenpairs; defaults to ``min(n_params, 100)``.
    random_state : int, RandomState instance or None, default=None
        Starting vector of the Lanczos iteration.
    """

    #: Random probes of the trace estimate, for operators without a diagonal.
    n_probes = 32

    def __init__(self, *, damping=0.0, rank=None, random_state=None):
        super().__init__(damping=damping)
        self.rank = rank
        self.random_state = random_state

    def fit(self, H, null_space=None):
        op = self._operator(H)
        self.null_space_ = null_space
        n = op.n_params
        rank = min(n, self.rank or 100)
        if rank >= n - 1:
            # ARPACK needs rank < n - 1: take every eigenpair from the dense
            # matrix, which only small problems ask for.
            vals, vecs = np.linalg.eigh(op.matmat(np.eye(n)))
        else:
            rng = check_random_state(self.random_state)
            lin = LinearOperator((n, n), matvec=lambda v: op.matmat(v[:, None])[:, 0],
                                 matmat=op.matmat, dtype=np.float64)
            vals, vecs = eigsh(lin, k=rank, which="LA", v0=rng.standard_normal(n))
        order = np.argsort(vals)[::-1]
        vals, vecs = vals[order], vecs[:, order]
        # Directions the objective cannot see carry eigenvalue ~0: drop them.
        keep = vals + self.damping > 1e-12 * max(vals[0] + self.damping, 1e-300)
        self.eigenvalues_, self.eigenvectors_ = vals[keep], vecs[:, keep]
        if op.diagonal is not None:
            trace, how = float(op.diagonal.sum()), "exact"
        else:
            # Hutchinson's estimator: E[z' H z] = trace(H) for Rademacher z;
            # one product with all probes at once, a few percent of error.
            rng = check_random_state(self.random_state)
            Z = rng.choice([-1.0, 1.0], size=(n, self.n_probes))
            trace = float(np.einsum("ij,ij->", Z, op.matmat(Z)) / self.n_probes)
            how = f"hutchinson ({self.n_probes} probes)"
        self.info_ = {"method": "arnoldi", "n_params": n, "damping": self.damping,
                      "rank": int(keep.sum()), "eigenvalues": self.eigenvalues_,
                      "captured": float(self.eigenvalues_.sum() / trace),
                      "trace": how}
        return self

    def solve(self, B):
        B = np.asarray(B, dtype=np.float64)
        U = self.eigenvectors_
        X = U @ ((U.T @ B) / (self.eigenvalues_ + self.damping)[:, None]
                 if B.ndim == 2 else (U.T @ B) / (self.eigenvalues_ + self.damping))
        return self._project(X)
