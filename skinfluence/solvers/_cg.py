"""Batched preconditioned conjugate gradients, matrix-free."""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._base import Solver


class CGSolver(Solver):
    """Conjugate gradients on ``H + damping I`` for many right-hand sides.

    Every column runs its own CG recursion, all of them sharing each Hessian
    product (one ``matmat`` per iteration for the whole batch). The Jacobi
    preconditioner ``diag(H) + damping`` is used when the operator knows its
    diagonal. A column has converged when its residual is at most
    ``tol * ||b||``; columns still above after ``max_iter`` iterations raise a
    ConvergenceWarning carrying the largest relative residual.

    Parameters
    ----------
    damping : float, default=0.0
    tol : float, default=1e-8
    max_iter : int, default=None
        Defaults to ``min(1000, 10 * n_params)``.
    """

    def __init__(self, *, damping=0.0, tol=1e-8, max_iter=None):
        super().__init__(damping=damping)
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, H, null_space=None):
        self.op_ = self._operator(H)
        self.null_space_ = null_space
        n = self.op_.n_params
        self.max_iter_ = self.max_iter or min(1000, 10 * n)
        diag = self.op_.diagonal
        self.inv_diag_ = None if diag is None else 1.0 / np.maximum(
            diag + self.damping, np.finfo(float).tiny)
        self.info_ = {"method": "cg", "n_params": n, "damping": self.damping,
                      "tol": self.tol, "max_iter": self.max_iter_,
                      "preconditioner": "jacobi" if diag is not None else None,
                      "n_solves": 0, "iterations": [], "residuals": []}
        return self

    def _apply(self, V):
        AV = self.op_.matmat(V)
        if self.damping:
            AV += self.damping * V
        return AV

    def _precondition(self, R, out):
        if self.inv_diag_ is None:
            np.copyto(out, R)
        else:
            np.multiply(self.inv_diag_[:, None], R, out=out)
        return out

    def solve(self, B):
        B = np.asarray(B, dtype=np.float64)
        squeeze = B.ndim == 1
        B = np.ascontiguousarray(self._project(B.reshape(B.shape[0], -1)))
        k = B.shape[1]
        out = np.zeros_like(B)
        b_norm = np.sqrt(np.einsum("ij,ij->j", B, B))
        rel = np.zeros(k)
        # The working set: columns still iterating, in place.  A converged
        # column takes zero steps until the set is compacted (when a quarter
        # of it has converged), so the Hessian products, which dominate the
        # cost, shrink with it while fancy-indexed copies stay rare.
        cols = np.flatnonzero(b_norm > 0)
        X = np.zeros((B.shape[0], cols.size))
        # (Fancy indexing along axis 1 returns Fortran order: copy back to C
        # so that every in-place update below walks memory in order.)
        R = np.ascontiguousarray(B[:, cols])
        T = np.empty_like(R)
        safe_b = b_norm[cols]
        active = np.ones(cols.size, dtype=bool)
        Zr = self._precondition(R, np.empty_like(R))
        P = Zr.copy()
        rz = np.einsum("ij,ij->j", R, Zr)
        it = 0
        while cols.size and it < self.max_iter_:
            it += 1
            AP = self._apply(P)
            pap = np.einsum("ij,ij->j", P, AP)
            alpha = np.where(active, rz / np.where(active & (pap != 0), pap, 1.0), 0.0)
            np.multiply(P, alpha, out=T)
            X += T
            AP *= alpha
            R -= AP
            del AP
            rel[cols] = np.sqrt(np.einsum("ij,ij->j", R, R)) / safe_b
            active &= rel[cols] > self.tol
            if active.sum() <= 0.75 * active.size:
                out[:, cols[~active]] = X[:, ~active]
                X, R, P = (np.ascontiguousarray(A[:, active]) for A in (X, R, P))
                cols, rz, safe_b = cols[active], rz[active], safe_b[active]
                T, Zr = np.empty_like(R), np.empty_like(R)
                active = np.ones(cols.size, dtype=bool)
                if not cols.size:
                    break
            self._precondition(R, Zr)
            rz_new = np.einsum("ij,ij->j", R, Zr)
            beta = np.where(active, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
            rz = rz_new
            P *= beta
            P += Zr
        out[:, cols] = X
        active = rel > self.tol
        X = out
        worst = float(rel.max()) if rel.size else 0.0
        self.info_["n_solves"] += k
        self.info_["iterations"].append(it)
        self.info_["residuals"].append(worst)
        if np.any(active):
            warnings.warn(
                f"CG did not converge: {int(active.sum())} of {k} "
                f"systems still have a relative residual above tol={self.tol:g} "
                f"after max_iter={self.max_iter_} iterations (largest residual "
                f"{worst:.3g}). Raise max_iter, loosen tol, or set damping > 0.",
                ConvergenceWarning,
                stacklevel=3,
            )
        X = self._project(X)
        return X[:, 0] if squeeze else X
