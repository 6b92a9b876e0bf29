"""Direct solver: one Cholesky factorisation of the dense Hessian."""

import time

import numpy as np
from scipy.linalg import LinAlgError, cho_solve, eigvalsh
from scipy.linalg.lapack import dpotrf, dpotri
from threadpoolctl import threadpool_limits

from ..utils import _array
from ._base import HessianOperator, Solver

#: Column block of :func:`_symmetrize_from_upper`.
BLOCK = 1024


def lapack_threads(n):
    """BLAS threads for LAPACK's ``potrf`` / ``potri`` on an n x n matrix.

    OpenBLAS's threaded ``potrf`` and ``potri`` collapse when another
    process shares the cores, the usual state of a shared machine (measured
    here at p = 4000 under load: 3.3 GFlop/s with 2 threads against 29 with
    one, and ``potri`` at p = 5000 5.8 s against 2.4), yet on idle cores two
    threads are 1.5-2.2x faster.  So a short probe decides: a 768 x 768
    GEMM (about 10 ms) timed in one thread and in all; all threads only
    where they run it at least 1.5x faster.  Small matrices take one.
    """
    if n < 2048:
        return 1
    a = np.ones((768, 768))

    def best():
        a @ a  # wakes the threads
        times = []
        for _ in range(3):
            start = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - start)
        return min(times)

    with threadpool_limits(1, user_api="blas"):
        one = best()
    return None if one > 1.5 * best() else 1


def cholesky_upper(A, overwrite=False):
    """Upper Cholesky factor U (``Uᵀ U = A``) of an SPD matrix, Fortran order.

    LAPACK's ``potrf`` in as many threads as :func:`lapack_threads` finds
    useful.  Raises LinAlgError where A is not positive definite.  The
    strict lower triangle of the result is zero.
    """
    U = np.array(A, dtype=np.float64, order="F", copy=not overwrite)
    with threadpool_limits(lapack_threads(U.shape[0]), user_api="blas"):
        U, info = dpotrf(U, lower=0, clean=1, overwrite_a=1)
    if info:
        raise LinAlgError(f"leading minor of order {info} is not positive")
    return U


def _symmetrize_from_upper(A):
    """Copy the upper triangle onto the lower, a column block at a time."""
    n = A.shape[0]
    for k in range(0, n, BLOCK):
        e = min(k + BLOCK, n)
        A[e:, k:e] = A[k:e, e:].T
        block = A[k:e, k:e]
        block[...] = np.triu(block) + np.triu(block, 1).T
    return A


def inverse_from_cholesky(U):
    """``(Uᵀ U)⁻¹`` from the upper factor by LAPACK's ``potri``.

    ``trtri`` then ``lauum``: two thirds of the flops of the factorisation
    again, a third of solving against the identity (2 p³), and no second
    factorisation; threads as :func:`lapack_threads` decides.
    """
    with threadpool_limits(lapack_threads(U.shape[0]), user_api="blas"):
        inv, info = dpotri(U, lower=0)
    if info:
        raise LinAlgError("singular Cholesky factor")
    return _symmetrize_from_upper(inv)


def _add_outer_on_support(A, N, scale):
    """``A += scale N Nᵀ`` in place, on the rows N touches only.

    A null space (softmax intercepts) touches a few coordinates: the dense
    p x p outer product would cost a full pass over A.
    """
    idx = np.flatnonzero(np.any(N != 0, axis=1))
    A[np.ix_(idx, idx)] += scale * (N[idx] @ N[idx].T)


def _not_pd_message(H, null_space, damping, hint=""):
    if null_space is not None:
        # Restrict to the orthogonal complement of the known null space.
        Q, _ = np.linalg.qr(null_space, mode="complete")
        comp = Q[:, null_space.shape[1]:]
        H = comp.T @ H @ comp
        where = " on the identifiable subspace"
    else:
        where = ""
    smallest = eigvalsh(H, subset_by_index=[0, 0])[0] if H.size else 0.0
    suggestion = max(1e-6, 10 * abs(smallest))
    scale = np.abs(np.diag(H)).max() if H.size else 0.0
    why = ("the fitted parameters are not a minimum of the training objective "
           "(an untrained or unconverged model?)"
           if smallest < -1e-8 * scale else
           "the model is not identifiable from the training data (collinear "
           "features, or no regularisation)")
    return (
        f"Hessian is not positive definite (smallest eigenvalue {smallest:.3g}"
        f"{where}, damping={damping:g}); {why}. Set damping > 0, e.g. "
        f"damping={suggestion:.1g}{hint}."
    )


class DirectSolver(Solver):
    """Cholesky of ``H + damping I``.

    Where the model has a null direction that its objective cannot see
    (softmax intercepts without penalty), the Cholesky is taken of
    ``H + c N N'`` with N an orthonormal basis of that direction: for any
    right-hand side orthogonal to N, as every gradient is, this returns the
    pseudo-inverse solution on the identifiable subspace, without damping.
    """

    def fit(self, H, null_space=None):
        if isinstance(H, HessianOperator):  # small problems only
            eye = np.eye(H.n_params)
            H = H.matmat(eye if H.template is None else _array.like(eye, H.template))
        if _array.is_torch(H):
            return self._fit_torch(H, null_space)
        H = np.asarray(H, dtype=np.float64)
        n = H.shape[0]
        self.null_space_ = null_space
        # Factorised in place in a Fortran copy: H itself is left untouched
        # (H is symmetric, so the copy of H.T is a plain memory copy).
        A = np.array(H.T, order="F")
        A[np.diag_indices(n)] += self.damping
        self._c = None
        if null_space is not None:
            self._c = c = max(1.0, float(np.mean(np.diag(A))))
            _add_outer_on_support(A, null_space, c)
        # Cholesky succeeds on some matrices that are singular to machine
        # precision; a tiny relative pivot is treated as a failure too.
        try:
            if not np.all(np.isfinite(A)):
                raise LinAlgError("non-finite Hessian")
            self.factor_ = (cholesky_upper(A, overwrite=True), False)
            pivots = np.abs(np.diag(self.factor_[0])) ** 2
            if n and pivots.min() <= 1e-13 * max(pivots.max(), 1e-300):
                raise LinAlgError("near-singular pivot")
        except (LinAlgError, ValueError) as exc:
            del A
            damped = H + self.damping * np.eye(n)
            raise ValueError(
                _not_pd_message(damped, null_space, self.damping, self.hint)
            ) from exc
        self.info_ = {
            "method": "direct",
            "form": "primal",
            "n_params": n,
            "damping": self.damping,
            "null_space_dim": 0 if null_space is None else null_space.shape[1],
            "min_pivot": float(np.sqrt(pivots.min())) if n else 0.0,
        }
        return self

    def _fit_torch(self, H, null_space):
        """Cholesky by ``torch.linalg`` on H's device, in its dtype (torch
        models have no null space)."""
        if null_space is not None:
            raise ValueError("a null space is not supported on torch tensors")
        n = H.shape[0]
        A = H + self.damping * _array.namespace(H).eye(n, dtype=H.dtype,
                                                       device=H.device)
        L = _array.cholesky(A)
        pivots = None if L is None else _array.to_numpy(L.diagonal()) ** 2
        if L is None or (n and pivots.min() <= 1e-13 * max(pivots.max(), 1e-300)):
            raise ValueError(_not_pd_message(_array.to_numpy(A), None, self.damping,
                                             self.hint))
        self.null_space_ = None
        self.factor_ = L
        self.info_ = {"method": "direct", "form": "primal", "n_params": n,
                      "damping": self.damping, "null_space_dim": 0,
                      "min_pivot": float(np.sqrt(pivots.min())) if n else 0.0,
                      "device": str(H.device), "dtype": str(H.dtype)}
        return self

    def solve(self, B):
        if _array.is_torch(self.factor_):
            return _array.cho_solve(self.factor_, B.reshape(B.shape[0], -1)
                                    ).reshape(B.shape)
        X = cho_solve(self.factor_, B, check_finite=False)
        if self.null_space_ is not None:
            N = self.null_space_
            X = X - N @ (N.T @ X)
        return X

    def inverse(self):
        """Dense ``H^-1`` (pseudo-inverse on the identifiable subspace), cached.

        From the Cholesky factor already computed; on a null space N (where
        ``H + c N Nᵀ`` was factorised) the projection ``(I - N Nᵀ)`` of that
        inverse, which equals ``(H + c N Nᵀ)⁻¹ - N Nᵀ / c``.
        """
        if getattr(self, "_inverse", None) is None:
            inv = inverse_from_cholesky(self.factor_[0])
            N = self.null_space_
            if N is not None:
                _add_outer_on_support(inv, N, -1.0 / self._c)
            self._inverse = inv
        return self._inverse
