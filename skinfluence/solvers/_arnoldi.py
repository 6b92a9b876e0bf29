"""Low-rank inverse from the top eigenpairs of the Hessian (Schioppa et al. 2022)."""

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.utils import check_random_state

from ..utils._array import is_torch, like, namespace, to_numpy
from ._base import Solver, not_pd_error


class ArnoldiSolver(Solver):
    """``H^-1 ~ U diag(1 / (lambda + damping)) U'`` on the top ``rank`` eigenpairs.

    What it drops: the components of a right-hand side outside the span of
    the top ``rank`` eigenvectors are set to zero. Those low-curvature
    directions are exactly where ``H^-1`` amplifies most, so below full rank
    influence is underestimated, by the share of the gradients that lies
    there. Every solve measures that share for each right-hand side
    (``info_["outside"]``, the largest ``||b - U U'b|| / ||b||``) and the
    true relative residual of its answer (one more Hessian product), and
    warns when the residual exceeds ``tol``: below full rank it nearly
    always does. ``info_["captured"]`` reports the share of ``trace(H)``
    kept (exact when the operator knows its diagonal, as GLM Hessians do,
    else a Hutchinson estimate, as ``info_["trace"]`` says). At full rank
    the answer is exact. Eigenpairs come from ARPACK's Lanczos iteration
    (``scipy.sparse.linalg.eigsh``) on products with H only, of largest
    magnitude: a negative eigenvalue among them (an indefinite Hessian)
    raises a ValueError rather than being dropped.

    Parameters
    ----------
    damping : float, default=0.0
    rank : int, default=None
        Number of eigenpairs; defaults to ``min(n_params, 100)``.
    tol : float, default=1e-8
        Largest true relative residual accepted without a warning.
    random_state : int, RandomState instance or None, default=None
        Starting vector of the Lanczos iteration.
    """

    #: Random probes of the trace estimate, for operators without a diagonal.
    n_probes = 32

    def __init__(self, *, damping=0.0, rank=None, tol=1e-8, random_state=None):
        super().__init__(damping=damping)
        self.rank = rank
        self.tol = tol
        self.random_state = random_state

    def fit(self, H, null_space=None):
        self.op_ = self._operator(H)
        # ARPACK runs in NumPy: a torch operator's products come to the host
        # here, and the eigenvectors go back to its device for the solves.
        op = self.op_.host()
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
            # Largest magnitude: the same pairs as "largest" on a positive
            # semi-definite H, and any large negative one on an indefinite H.
            vals, vecs = eigsh(lin, k=rank, which="LM", v0=rng.standard_normal(n))
        order = np.argsort(vals)[::-1]
        vals, vecs = vals[order], vecs[:, order]
        top = max(float(np.abs(vals).max()) if vals.size else 0.0, 1e-300)
        damped = vals + self.damping
        if damped.size and damped.min() < -1e-8 * (top + self.damping):
            raise not_pd_error(float(damped.min()), self.damping,
                               where="as an eigenvalue",
                               hint=self.hint)
        # Directions the objective cannot see carry eigenvalue ~0: drop them.
        keep = damped > 1e-12 * max(damped.max() if damped.size else 0.0, 1e-300)
        self.eigenvalues_, self.eigenvectors_ = vals[keep], vecs[:, keep]
        template = self.op_.template
        self._on = template if template is not None else np.empty(0)
        self._U = like(np.ascontiguousarray(self.eigenvectors_), self._on)
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
                      "trace": how, "tol": self.tol, "n_solves": 0}
        return self

    def solve(self, B):
        """``U diag(1 / (lambda + damping)) U' B``, in the operator's arrays."""
        if is_torch(self._on) and not is_torch(B):
            return to_numpy(self.solve(like(B, self._on)))
        if not is_torch(B):
            B = np.asarray(B, dtype=np.float64)
        squeeze = B.ndim == 1
        B = self._project(B.reshape(B.shape[0], -1))
        U = self._U
        C = U.T @ B
        norm = namespace(B).linalg.vector_norm
        b = to_numpy(norm(B, axis=0))
        outside = to_numpy(norm(B - U @ C, axis=0)) / np.where(b > 0, b, 1.0)
        inv = like(1.0 / (self.eigenvalues_ + self.damping), self._on)
        X = self._project(U @ (C * inv[:, None]))
        rel, _ = self._residuals(X, B)
        worst_out = float(outside.max()) if outside.size else 0.0
        n, r = self.info_["n_params"], self.info_["rank"]
        self._certify(
            rel,
            f"Arnoldi kept {r} of {n} eigenpairs, and up to {worst_out:.1%} of a "
            "right-hand side lies outside them, where influence is dropped: "
            f"raise rank (solver_params={{'rank': ...}}, up to {n}), or use "
            "method='direct' or 'cg'.",
            outside=worst_out,
        )
        return X[:, 0] if squeeze else X
