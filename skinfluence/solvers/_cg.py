"""Batched preconditioned conjugate gradients, matrix-free."""

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._base import Solver


def _dot(r, A, B):
    """Column dot products of rows r of A and B."""
    return np.einsum("ij,ij->j", A[r], B[r])


def _update(r, X, R, P, AP, Zr, inv_diag, alpha):
    """One CG step on rows r; returns their share of (r'r, r'z).

    AP is spent: once R is updated it holds ``alpha P`` for X's update.
    ``inv_diag`` None: the preconditioner is not diagonal, and ``Zr`` and
    ``r'z`` are left to the caller.
    """
    AP[r] *= alpha
    R[r] -= AP[r]
    np.multiply(P[r], alpha, out=AP[r])
    X[r] += AP[r]
    if inv_diag is None:
        return _dot(r, R, R), None
    np.multiply(inv_diag[r], R[r], out=Zr[r])
    return _dot(r, R, R), _dot(r, R, Zr)


def _step(r, P, Zr, beta):
    """New search directions on rows r: ``P <- Zr + beta P``."""
    P[r] *= beta
    P[r] += Zr[r]


class CGSolver(Solver):
    """Conjugate gradients on ``H + damping I`` for many right-hand sides.

    Every column runs its own CG recursion, all of them sharing each Hessian
    product (one ``matmat`` per iteration for the whole batch). The Jacobi
    preconditioner ``diag(H) + damping`` is used when the operator knows its
    diagonal, unless another is given. A column has converged when its
    residual is at most ``tol * ||b||``; columns still above after
    ``max_iter`` iterations raise a ConvergenceWarning carrying the largest
    relative residual.

    Parameters
    ----------
    damping : float, default=0.0
    tol : float, default=1e-8
    max_iter : int, default=None
        Defaults to ``min(1000, 10 * n_params)``.
    n_threads : int, default=1
        Threads for the vector updates of large batches.
    preconditioner : "jacobi", fitted solver or None, default=None
        None or "jacobi": Jacobi when the operator knows its diagonal (none
        otherwise). A fitted solver (anything with ``solve(R)``) applies an
        approximate inverse of ``H + damping I``, which must be symmetric
        positive definite: EK-FAC for torch models, for instance.
    """

    def __init__(self, *, damping=0.0, tol=1e-8, max_iter=None, n_threads=1,
                 preconditioner=None):
        super().__init__(damping=damping)
        self.tol = tol
        self.max_iter = max_iter
        self.n_threads = n_threads
        self.preconditioner = preconditioner

    def fit(self, H, null_space=None):
        self.op_ = self._operator(H)
        self.null_space_ = null_space
        n = self.op_.n_params
        self.max_iter_ = self.max_iter or min(1000, 10 * n)
        diag = self.op_.diagonal
        pre = self.preconditioner
        self.inv_diag_ = self.precondition_ = None
        if hasattr(pre, "solve"):
            self.precondition_ = pre.solve
            name = type(pre).__name__.removesuffix("Solver").lower()
        elif pre is None or pre == "jacobi":
            if pre == "jacobi" and diag is None:
                raise ValueError(
                    "preconditioner='jacobi' needs the Hessian's diagonal, which "
                    "this model's operator does not provide."
                )
            if diag is not None:
                self.inv_diag_ = 1.0 / np.maximum(diag + self.damping,
                                                  np.finfo(float).tiny)
            name = "jacobi" if diag is not None else None
        elif pre == "ekfac":
            raise ValueError(
                "preconditioner='ekfac' applies to torch models (Linear and "
                "Conv2d layers); GLMs use 'jacobi'."
            )
        else:
            raise ValueError(
                f"preconditioner must be 'jacobi', a fitted solver or None; got "
                f"{pre!r}."
            )
        self.info_ = {"method": "cg", "n_params": n, "damping": self.damping,
                      "tol": self.tol, "max_iter": self.max_iter_,
                      "preconditioner": name,
                      "n_solves": 0, "iterations": [], "residuals": []}
        return self

    def _apply(self, V):
        AV = self.op_.matmat(V)
        if self.damping:
            AV += self.damping * V
        return AV

    def _rows(self, shape):
        """Row slices for the vector updates: one per thread when it pays."""
        n, k = shape
        parts = self.n_threads if n * k >= 2**20 else 1
        bounds = np.linspace(0, n, max(1, min(parts, n)) + 1).astype(int)
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def solve(self, B):
        B = np.asarray(B, dtype=np.float64)
        squeeze = B.ndim == 1
        B = np.ascontiguousarray(self._project(B.reshape(B.shape[0], -1)))
        k = B.shape[1]
        out = np.zeros_like(B)
        b_norm = np.sqrt(np.einsum("ij,ij->j", B, B))
        rel = np.zeros(k)
        if self.precondition_ is not None:
            inv_diag, precondition = None, self.precondition_
        else:
            inv_diag = (np.ones((B.shape[0], 1)) if self.inv_diag_ is None
                        else self.inv_diag_[:, None])
            precondition = inv_diag.__mul__
        # The working set: columns still iterating, updated in place.  A
        # converged column takes zero steps until the set is compacted (when
        # a quarter of it has converged), so the Hessian products, which
        # dominate the cost, shrink with it while fancy-indexed copies stay
        # rare.  (Fancy indexing along axis 1 returns Fortran order: copies
        # go back to C order, so that every update walks memory in order.)
        cols = np.flatnonzero(b_norm > 0)
        R = np.ascontiguousarray(B[:, cols])
        X = np.zeros_like(R)
        Zr = np.ascontiguousarray(precondition(R))
        P = Zr.copy()
        safe_b = b_norm[cols]
        active = np.ones(cols.size, dtype=bool)
        rz = np.einsum("ij,ij->j", R, Zr)
        it = 0
        # The vector updates are row-separable (column sums add up over row
        # blocks), so they run on row blocks in threads: NumPy releases the
        # GIL in its loops, and they are a fifth of the time on wide data.
        with ThreadPoolExecutor(self.n_threads) as pool:

            def each(fn, *arrays):
                rows = self._rows(arrays[0].shape)
                return list(pool.map(lambda r: fn(r, *arrays), rows))

            while cols.size and it < self.max_iter_:
                it += 1
                AP = self._apply(P)
                pap = sum(each(_dot, P, AP))
                alpha = np.where(active, rz / np.where(pap != 0, pap, 1.0), 0.0)
                sums = each(_update, X, R, P, AP, Zr, inv_diag, alpha)
                del AP
                rr = sum(s[0] for s in sums)
                if inv_diag is None:
                    Zr[...] = precondition(R)
                    rz_new = sum(each(_dot, R, Zr))
                else:
                    rz_new = sum(s[1] for s in sums)
                rel[cols] = np.sqrt(rr) / safe_b
                active &= rel[cols] > self.tol
                if active.sum() <= 0.75 * active.size:
                    out[:, cols[~active]] = X[:, ~active]
                    X, R, P, Zr = (np.ascontiguousarray(A[:, active])
                                   for A in (X, R, P, Zr))
                    cols, rz, rz_new, safe_b = (
                        cols[active], rz[active], rz_new[active], safe_b[active])
                    active = np.ones(cols.size, dtype=bool)
                beta = np.where(active, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
                rz = rz_new
                each(_step, P, Zr, beta)
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
