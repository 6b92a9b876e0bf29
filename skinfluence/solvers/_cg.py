"""Batched preconditioned conjugate gradients, matrix-free."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from scipy import linalg
from scipy.linalg.blas import dgemm
from threadpoolctl import ThreadpoolController

from ..utils._array import eps, is_torch, like, namespace, to_numpy
from ..utils._threads import one_blas_thread
from ._base import Solver, not_pd_error
from ._nystrom import NystromPreconditioner, check_rank

#: Nyström rank for operators that do not say what their products cost.
NYSTROM_RANK = 50
#: Fewest sketch columns by default (the intercept, the densest features).
NYSTROM_MIN_RANK = 8
#: Most sketch columns by default: the sketch costs that many Hessian-product
#: columns, once, at ``fit``.
NYSTROM_MAX_RANK = 256
#: Largest default basis, bytes (n_params x rank floats, held while fitted).
NYSTROM_MAX_BYTES = 2**27
#: ``preconditioner="auto"`` takes Nyström from this many parameters on
#: (where it would add a sketch to a small, quickly solved problem below).
NYSTROM_MIN_PARAMS = 5000


def nystrom_rank(op):
    """Default rank of the Nyström preconditioner for operator ``op``.

    Applying it costs ``4 n_params rank`` flops per right-hand side and
    iteration, a GLM's Hessian product ``4 nnz(Z) K``: the rank is a quarter
    of the mean count of non-zeros per feature column, ``nnz(Z) / (4 p)``, so
    that it costs at most a quarter of a product's flops (in dense BLAS,
    against memory-bound sparse products); at least ``NYSTROM_MIN_RANK``, at
    most ``NYSTROM_MAX_RANK``, ``NYSTROM_MAX_BYTES`` of basis and
    ``n_params``. Operators that do not expose their GLM structure get
    ``NYSTROM_RANK``.

    Measured (CG to tol=1e-8, iterations with Jacobi -> Nyström): text-like
    sparse logistic regression, 50000 x 2**17, 200 right-hand sides,
    53 -> 28 (rank 1), 27 (ranks 9 to 200); dense 13000 x 784, 100
    right-hand sides, 163 -> 85 (rank 50), 33 (200), 24 (256), 19 (300),
    5 (785 = n_params).
    """
    n = op.n_params
    gram = getattr(op, "gram", None)
    if gram is not None:
        Z = gram.Z
        nnz = Z.nnz if sp.issparse(Z) else Z.size
        rank = max(NYSTROM_MIN_RANK, -(-nnz // max(4 * Z.shape[1], 1)))
    else:
        rank = NYSTROM_RANK
    return int(max(1, min(n, rank, NYSTROM_MAX_RANK, NYSTROM_MAX_BYTES // (8 * n))))


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


def _low_rank_share(r, R, V):
    """Rows r's share of ``V' R``."""
    return V[r].T @ R[r]


def _low_rank_add(r, Zr, V, CQ):
    """``Zr += V CQ`` on rows r, in place and without an (n, k) temporary."""
    Zt = Zr[r].T
    if Zt.flags.f_contiguous:  # C-ordered Zr is Fortran-ordered Zr'
        dgemm(1.0, np.ascontiguousarray(CQ).T, V[r].T, beta=1.0, c=Zt,
              overwrite_c=True)
    else:
        Zr[r] += V[r] @ CQ


def _step(r, P, Zr, beta):
    """New search directions on rows r: ``P <- Zr + beta P``."""
    P[r] *= beta
    P[r] += Zr[r]


class CGSolver(Solver):
    """Conjugate gradients on ``H + damping I`` for many right-hand sides.

    Every column runs its own CG recursion, all of them sharing each Hessian
    product (one ``matmat`` per iteration for the whole batch). The Jacobi
    preconditioner ``diag(H) + damping`` is used when the operator knows its
    diagonal, unless another is given; ``"nystrom"`` adds to it an exact
    low-rank part from one sketch of H (see Notes). A column has converged when its
    residual is at most ``tol * ||b||``.

    Every solve certifies itself: the true residual ``(H + damping I) x - b``
    of the answer is measured with one more Hessian product (the
    recursion's own drifts from it in floating point); columns above ``tol``
    restart from it once while iterations are left, and any still above
    raise a ConvergenceWarning carrying the largest relative residual.
    ``info_`` records the last solve (``iterations``, ``residual``,
    ``restarts``) and running totals (``n_solves``, ``total_iterations``,
    ``max_residual``). A
    search direction of non-positive curvature ``p'(H + damping I)p <= 0``
    raises a ValueError: the operator is not positive definite.

    Parameters
    ----------
    damping : float, default=0.0
    tol : float, default=1e-8
    max_iter : int, default=None
        Defaults to ``min(1000, 10 * n_params)``.
    n_threads : int, default=1
        Threads for the vector updates of large batches.
    preconditioner : "jacobi", "nystrom", "auto", fitted solver or None, \
            default=None
        None or "jacobi": Jacobi when the operator knows its diagonal (none
        otherwise). "nystrom": a rank-``rank`` Nyström approximation of H
        plus a diagonal, from one Hessian product with ``rank`` columns at
        ``fit`` (see Notes). "auto": "nystrom" where the operator knows its
        diagonal and has at least ``NYSTROM_MIN_PARAMS`` parameters, else as
        None. A fitted solver (anything with ``solve(R)``) applies an
        approximate inverse of ``H + damping I``, which must be symmetric
        positive definite: EK-FAC for torch models, for instance.
    rank : int, default=None
        Columns of the Nyström sketch (at most ``n_params``); None: see
        :func:`nystrom_rank`.
    block : "auto" or bool, default="auto"
        True: block CG, one Krylov space shared by all right-hand sides
        (see ``_iterate_block``): k of them converge in about 1/k of the
        iterations, at the cost of an orthonormalisation of ``n_params x k``
        per iteration. False: one recursion per column, sharing only the
        products. "auto": block where the operator has no GLM structure
        (torch models, whose products dominate), per column for GLMs.
    random_state : int, RandomState instance or None, default=0
        Seeds the Nyström sketch where the operator has no diagonal (with a
        diagonal the sketch is deterministic).

    Notes
    -----
    With ``preconditioner="nystrom"`` and a known diagonal, the sketch takes
    the ``rank`` columns of H with the largest diagonal, ``Y = H[:, S]``,
    and CG is preconditioned by ``P = Y H[S, S]^+ Y' + diag(residual)``: exact
    on those columns, Jacobi on the rest of H once they are eliminated. It
    costs one Hessian product with ``rank`` columns at ``fit``, then
    ``4 n_params rank k`` flops per iteration for ``k`` right-hand sides, and
    holds an ``(n_params, rank)`` basis. Without a diagonal it is the
    randomized Nyström preconditioner of Frangella, Tropp & Udell (2023).
    """

    def __init__(self, *, damping=0.0, tol=1e-8, max_iter=None, n_threads=1,
                 preconditioner=None, rank=None, block="auto", random_state=0):
        super().__init__(damping=damping)
        self.tol = tol
        self.max_iter = max_iter
        self.n_threads = n_threads
        self.preconditioner = preconditioner
        self.rank = rank
        self.block = block
        self.random_state = random_state

    def fit(self, H, null_space=None):
        self.op_ = self._operator(H)
        self.null_space_ = null_space
        # Block CG where products are dear and few parameters share many
        # right-hand sides (torch models: no GLM structure to precondition).
        self.block_ = (self.op_.gram is None and not self.op_.columnwise
                       if self.block == "auto" else bool(self.block))
        if self.block_ and self.op_.columnwise:
            raise ValueError("block CG needs one operator for all right-hand "
                             "sides; a columnwise operator takes block=False.")
        template = self.op_.template
        if not self.block_:
            # The per-column recursion runs in NumPy: a torch operator's
            # products come to the host (block CG keeps them on the device).
            self.op_ = self.op_.host()
        n = self.op_.n_params
        self.max_iter_ = self.max_iter or min(1000, 10 * n)
        diag = self.op_.diagonal
        if diag is not None and n:
            # A diagonal entry is the curvature e_i'(H + damping I)e_i.
            d = np.asarray(diag) + self.damping
            i = int(np.argmin(d))
            if d[i] < -1e-12 * np.abs(d).max():
                raise not_pd_error(float(d[i]), self.damping,
                                   where=f"on coordinate {i} (a diagonal entry)",
                                   hint=self.hint)
        pre = self.preconditioner
        rank = check_rank(self.rank)
        self.inv_diag_ = self.precondition_ = self.low_rank_ = None
        extra = {}
        if isinstance(pre, str) and pre == "auto":
            pre = ("nystrom" if diag is not None and n >= NYSTROM_MIN_PARAMS
                   else None)
        if hasattr(pre, "solve"):
            self.precondition_ = pre.solve
            name = type(pre).__name__.removesuffix("Solver").lower()
        elif isinstance(pre, str) and pre == "nystrom":
            r = min(n, rank or nystrom_rank(self.op_))
            nys = NystromPreconditioner(r, random_state=self.random_state).fit(
                self.op_.host(), damping=self.damping, null_space=null_space)
            # P^-1 = diag(inv_diag) + V diag(coef) V': the diagonal goes
            # through the Jacobi step, the low-rank term is added to it
            # (sketched in NumPy, applied where the iterates are).
            on = template if self.block_ and template is not None else np.empty(0)
            self.inv_diag_ = like(nys.inv_diag_, on)
            if nys.coef_.size:
                self.low_rank_ = like(nys.basis_, on), like(nys.coef_, on)
            name = "nystrom"
            extra = {"rank": nys.rank_, "sketch": nys.sketch_,
                     "sketch_columns": r}
        elif pre is None or (isinstance(pre, str) and pre == "jacobi"):
            if pre == "jacobi" and diag is None:
                raise ValueError(
                    "preconditioner='jacobi' needs the Hessian's diagonal, which "
                    "this model's operator does not provide."
                )
            if diag is not None:
                self.inv_diag_ = 1.0 / np.maximum(diag + self.damping,
                                                  np.finfo(float).tiny)
            name = "jacobi" if diag is not None else None
        elif isinstance(pre, str) and pre == "ekfac":
            raise ValueError(
                "preconditioner='ekfac' applies to torch models (Linear and "
                "Conv2d layers); GLMs use 'jacobi' or 'nystrom'."
            )
        else:
            raise ValueError(
                f"preconditioner must be 'jacobi', 'nystrom', 'auto', a fitted "
                f"solver or None; got {pre!r}."
            )
        extra["block"] = self.block_
        self.info_ = {"method": "cg", "n_params": n, "damping": self.damping,
                      "tol": self.tol, "max_iter": self.max_iter_,
                      "preconditioner": name,
                      **extra,
                      "n_solves": 0}
        return self

    def _rows(self, shape):
        """Row slices for the vector updates: one per thread when it pays."""
        n, k = shape
        parts = self.n_threads if n * k >= 2**20 else 1
        bounds = np.linspace(0, n, max(1, min(parts, n)) + 1).astype(int)
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def solve(self, B):
        """Solutions of ``(H + damping I) X = B``, B of shape (n_params, k).

        Block CG takes and returns the operator's arrays (torch tensors on
        the model's device, or NumPy); the per-column recursion runs in
        NumPy and returns B's kind.
        """
        if is_torch(B) and not self.block_:
            return like(self.solve(to_numpy(B)), B)
        if not is_torch(B):
            B = np.asarray(B, dtype=np.float64)
        squeeze = B.ndim == 1
        B = self._project(B.reshape(B.shape[0], -1))
        if not is_torch(B):
            B = np.ascontiguousarray(B)
        b_norm = to_numpy(namespace(B).linalg.vector_norm(B, axis=0))
        if not np.all(np.isfinite(b_norm)):
            raise self._non_finite()
        iterate = self._iterate_block if self.block_ else self._iterate
        X, it = iterate(B, b_norm, self.max_iter_)
        X = self._project(X)
        # Certify with the true residual, which the recursion's drifts from:
        # columns above tol restart from it while iterations are left.
        rel, R = self._residuals(X, B)
        redo = np.flatnonzero(rel > self.tol)
        restarts = 0
        if redo.size and it < self.max_iter_ and np.all(np.isfinite(rel)):
            # (NumPy indices index torch tensors too.)
            R = -R[:, redo]
            D, used = iterate(R if is_torch(R) else np.ascontiguousarray(R),
                              b_norm[redo], self.max_iter_ - it, columns=redo)
            X[:, redo] += self._project(D)
            rel[redo], _ = self._residuals(X[:, redo], B[:, redo], cols=redo)
            it, restarts = it + used, 1
        if it >= self.max_iter_:
            advice = (f"CG stopped at max_iter={self.max_iter_}: raise max_iter "
                      "(solver_params={'max_iter': ...}), loosen tol, or set "
                      "damping > 0.")
        else:
            single = eps(B) > 1e-10
            advice = ("CG's recursion converged but the true residual did not "
                      "follow (the damped Hessian is too ill-conditioned for "
                      f"this tol in {'single' if single else 'double'} "
                      "precision): loosen tol or set damping > 0"
                      + (", or compute in float64 (TorchModel's dtype)."
                         if single else "."))
        self.info_["total_iterations"] = self.info_.get("total_iterations", 0) + it
        self._certify(rel, advice, iterations=it, restarts=restarts)
        return X[:, 0] if squeeze else X

    def _precondition_block(self, R):
        """``M^-1 R`` for block CG: Jacobi or Nyström, or a fitted solver."""
        if self.precondition_ is not None:
            return self.precondition_(R)
        Z = R if self.inv_diag_ is None else self.inv_diag_[:, None] * R
        if self.low_rank_ is not None:
            V, coef = self.low_rank_
            Z = Z + V @ (coef[:, None] * (V.T @ R))
        return Z

    def _iterate_block(self, B, b_norm, max_iter, columns=None):
        """Block CG (O'Leary 1980) on the columns of B, breakdown-free.

        All columns share one Krylov space: each iteration adds the span of
        the preconditioned residuals of all of them, so k right-hand sides
        converge in about ``1/k`` of the iterations of k separate
        recursions, on the same one block product per iteration. The
        search block is orthonormalised each step by a QR that drops
        directions already spanned (Ji & Li 2017), so it cannot break
        down when residuals become dependent; ``alpha`` and ``beta`` do not
        depend on the basis chosen. ``P'(H + damping I)P`` is the block's
        curvature: not positive definite, it raises as a scalar
        ``p'Ap <= 0`` does.

        Written against the array API: the (n_params, k) blocks stay in B's
        library, on its device and in its dtype (torch tensors for torch
        models); only the k x k algebra comes to the host, in float64.
        (``columns`` is for columnwise operators, which block CG refuses.)
        """
        xp = namespace(B)
        norm = xp.linalg.vector_norm
        # Columns scaled to the norms they are judged against: the QR then
        # drops a direction for being spanned, not for being small.
        scale = like(np.where(b_norm > 0, b_norm, 1.0), B)
        R = B / scale
        X = xp.zeros_like(R)
        target = np.where(b_norm > 0, self.tol, 0.0)
        it = 0

        def small(A):  # a k x k block, in float64 on the host
            return to_numpy(A)

        # The block's own algebra (n x k x k products, k x k factorisations)
        # on one BLAS thread: two, beside torch's threads, made each a
        # spin-wait (a 50 x 50 solve took 8 ms).
        one_blas_thread.__enter__()
        try:
            P = self._orth(self._project(self._precondition_block(R)))
            while P.shape[1] and it < max_iter:
                if np.all(to_numpy(norm(R, axis=0)) <= target):
                    break
                it += 1
                one_blas_thread.__exit__()  # products at full width
                try:
                    Q = self._apply(P)
                finally:
                    one_blas_thread.__enter__()
                PQ = small(P.T @ Q)
                PQ = 0.5 * (PQ + PQ.T)
                try:
                    factor = linalg.cho_factor(PQ, lower=False, check_finite=True)
                except (linalg.LinAlgError, ValueError):
                    w, V = np.linalg.eigh(PQ)
                    raise not_pd_error(float(w[0]), self.damping, hint=self.hint,
                                       where="on a block of search directions"
                                       ) from None
                alpha = like(linalg.cho_solve(factor, small(P.T @ R)), B)
                X += P @ alpha
                R -= Q @ alpha
                if np.all(to_numpy(norm(R, axis=0)) <= target):
                    break
                Z = self._project(self._precondition_block(R))
                beta = like(-linalg.cho_solve(factor, small(Q.T @ Z)), B)
                P = self._orth(Z + P @ beta)
        finally:
            one_blas_thread.__exit__()
        return X * scale, it

    @staticmethod
    def _orth(W):
        """Orthonormal basis of W's columns, dropping dependent ones.

        Householder QR (BLAS-3; column pivoting, BLAS-2, was 20x slower
        here): a column whose ``|R_ii|`` is negligible lies in the span of
        the ones before it, and its direction is dropped.
        """
        if W.shape[1] == 0:
            return W
        xp = namespace(W)
        Qw, Rw = xp.linalg.qr(W)
        d = np.abs(to_numpy(xp.linalg.diagonal(Rw)))
        keep = np.flatnonzero(d > 1e-12 * max(d.max(), 1e-300))
        Q = Qw[:, keep]
        return Q if is_torch(Q) else np.ascontiguousarray(Q)

    def _iterate(self, B, b_norm, max_iter, columns=None):
        """Run CG from zero on the columns of B until each residual is at
        most ``tol * b_norm``; returns the solutions and iterations taken.
        ``columns``: the right-hand sides B's columns are (for a columnwise
        operator), ``arange`` by default.
        """
        columns = np.arange(B.shape[1]) if columns is None else np.asarray(columns)
        k = B.shape[1]
        out = np.zeros_like(B)
        rel = np.zeros(k)
        if self.precondition_ is not None:
            inv_diag, precondition = None, self.precondition_
        else:
            inv_diag = (np.ones((B.shape[0], 1)) if self.inv_diag_ is None
                        else self.inv_diag_[:, None])
            precondition = inv_diag.__mul__
        low_rank = self.low_rank_
        # The working set: columns still iterating, updated in place.  A
        # converged column takes zero steps until the set is compacted (when
        # a quarter of it has converged), so the Hessian products, which
        # dominate the cost, shrink with it while fancy-indexed copies stay
        # rare.  (Fancy indexing along axis 1 returns Fortran order: copies
        # go back to C order, so that every update walks memory in order.)
        col_norm = np.sqrt(np.einsum("ij,ij->j", B, B))
        cols = np.flatnonzero(col_norm > 0)
        R = np.ascontiguousarray(B[:, cols])
        X = np.zeros_like(R)
        Zr = np.ascontiguousarray(precondition(R))
        rz = np.einsum("ij,ij->j", R, Zr)
        safe_b = np.where(b_norm[cols] > 0, b_norm[cols], 1.0)
        active = np.ones(cols.size, dtype=bool)
        it = 0
        # The vector updates are row-separable (column sums add up over row
        # blocks), so they run on row blocks in threads: NumPy releases the
        # GIL in its loops, and they are a fifth of the time on wide data.
        with ThreadPoolExecutor(self.n_threads) as pool:

            def each(fn, *arrays):
                rows = self._rows(arrays[0].shape)
                return list(pool.map(lambda r: fn(r, *arrays), rows))

            if low_rank is not None:
                V, coef = low_rank
                blas = ThreadpoolController()

                def add_low_rank(R, Zr):
                    """``Zr += V coef V' R``; returns the gain of ``r'z``."""
                    # On our row blocks with one BLAS thread each: BLAS's
                    # own threads on these (r x n_params x k) products were
                    # up to 60x slower on a loaded two-core machine.
                    with blas.limit(limits=1, user_api="blas"):
                        Q = sum(each(_low_rank_share, R, V))
                        CQ = coef[:, None] * Q
                        each(_low_rank_add, Zr, V, CQ)
                    return np.einsum("ij,ij->j", Q, CQ)

                rz += add_low_rank(R, Zr)
            P = Zr.copy()

            while cols.size and it < max_iter:
                it += 1
                AP = self._apply(P, columns[cols])
                pap = sum(each(_dot, P, AP))
                # p'Ap <= 0 along a non-zero direction: A is not positive
                # definite, and CG's answer would be meaningless.
                bent = active & ~(pap > 0)
                if np.any(bent):
                    c = int(np.flatnonzero(bent)[0])
                    pp = float(P[:, c] @ P[:, c])
                    raise not_pd_error(float(pap[c]) / max(pp, 1e-300),
                                       self.damping, hint=self.hint)
                alpha = np.where(active, rz / np.where(pap != 0, pap, 1.0), 0.0)
                sums = each(_update, X, R, P, AP, Zr, inv_diag, alpha)
                del AP
                rr = sum(s[0] for s in sums)
                if inv_diag is None:
                    Zr[...] = precondition(R)
                    rz_new = sum(each(_dot, R, Zr))
                else:
                    rz_new = sum(s[1] for s in sums)
                if low_rank is not None:
                    rz_new = rz_new + add_low_rank(R, Zr)
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
        return out, it
