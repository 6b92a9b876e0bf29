"""Exact solves in the dual: Woodbury on the n K x n K kernel of a GLM.

A GLM's Hessian is ``H = Λ + Ψᵀ D Ψ``: ``Λ`` diagonal (the penalty, plus
damping), ``Ψ`` the (n K, K p) map ``θ -> raw predictions`` with rows
``e_k ⊗ z_j``, and ``D`` block-diagonal with the rows' K x K curvature
blocks ``D_j = s_j ∂²ℓ/∂raw²``.  On wide data (fewer rows than parameters)
the identity

    (Λ + Ψᵀ D Ψ)⁻¹ = Λ^-½ (I - Φᵀ (I + Φ Φᵀ)⁻¹ Φ) Λ^-½,   Φ = D^½ Ψ Λ^-½,

trades the (K p)² primal matrix for the (n K)² kernel ``G = Φ Φᵀ``, whose
blocks are ``G_(j, i) = κ(x_j, x_i) D_j^½ D_i^½`` with the base kernel
``κ(x_j, x_i) = x_jᵀ Λ_f⁻¹ x_i`` over the penalised features.  Coordinates
without penalty (an unpenalised intercept, and the direction a softmax
cannot see) make ``Λ`` singular; they are eliminated exactly by their Schur
complement, a q x q system with q the number of such coordinates.
"""

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.linalg import LinAlgError, cho_factor, cho_solve, solve_triangular
from sklearn.exceptions import ConvergenceWarning

from ._base import Solver

#: Largest count of unpenalised coordinates eliminated by their Schur
#: complement (one solve each at fit).
MAX_FREE = 256


class GramStructure:
    """What the dual solve needs of ``H = diag(penalty) + Ψᵀ D Ψ``.

    Parameters
    ----------
    Z : {ndarray, sparse matrix} of shape (n_rows, p)
        Features of every output (the intercept column included).
    D : ndarray of shape (n_rows, K, K)
        Per-row curvature blocks, each symmetric positive semi-definite.
    penalty : ndarray of shape (K * p,)
        Diagonal of ``Λ``, output-major like ``θ``.
    """

    def __init__(self, Z, D, penalty):
        self.Z, self.D, self.penalty = Z, D, penalty

    @property
    def n_outputs(self):
        return self.D.shape[1]

    def split(self, damping=0.0, null_space=None):
        """Penalised and free feature columns; None where Λ is not tiled.

        The dual form needs the penalty of each feature to be the same for
        every output; the free columns (zero penalty, or touched by the null
        space) are eliminated separately.
        """
        K = self.n_outputs
        p = self.Z.shape[1]
        lam = (self.penalty + damping).reshape(K, p)
        free = np.any(lam == 0, axis=0)
        if null_space is not None:
            free |= np.any(null_space.reshape(K, p, -1) != 0, axis=(0, 2))
        pen = np.flatnonzero(~free)
        if not np.all(lam[:, pen] == lam[:1, pen]) or K * free.sum() > MAX_FREE:
            return None
        return pen, np.flatnonzero(free), lam[0, pen]

    def dual_cost(self):
        """Flops and bytes of the dual factorisation (the kernel and G)."""
        n, p = self.Z.shape
        K = self.n_outputs
        if sp.issparse(self.Z):
            col_nnz = np.bincount(self.Z.tocsr().indices, minlength=p)
            kernel = 2.0 * float(col_nnz @ col_nnz)
        else:
            kernel = float(n) * n * p
        m = n * K
        flops = kernel + float(n) * n * K**3 + m**3 / 3.0
        return flops, 16.0 * m * m


def _sqrt_blocks(D):
    """Symmetric square roots of PSD K x K blocks, shape (n, K, K)."""
    if D.shape[1] == 1:
        return np.sqrt(np.maximum(D, 0.0))
    w, V = np.linalg.eigh(D)
    return np.einsum("nik,nk,njk->nij", V, np.sqrt(np.maximum(w, 0.0)), V)


class DualSolver(Solver):
    """Exact ``H⁻¹`` through the n K x n K dual kernel (no iterations).

    For wide data (fewer training rows than parameters): it factorises the
    kernel ``I + G`` once (Cholesky) and eliminates the unpenalised
    coordinates by a Schur complement.  Every solve is then exact; its
    relative residual ``‖H x − b‖ / ‖b‖`` is measured with one Hessian
    product, refined once if above 1e-10, and recorded in ``info_``.
    ``fit`` takes a :class:`HessianOperator` carrying a :class:`GramStructure`
    in its ``gram`` attribute.
    """

    def fit(self, H, null_space=None):
        gram = getattr(H, "gram", None)
        if gram is None:
            raise ValueError("The dual solver needs the GLM's Gram structure.")
        split = gram.split(self.damping, null_space)
        if split is None:
            raise ValueError(
                "The dual solve needs the same penalty on every output and at "
                f"most {MAX_FREE} unpenalised coordinates; use method='direct' "
                "(primal) or 'cg'."
            )
        self.op_, self.null_space_ = H, null_space
        pen, free, lam = split
        Z, D = gram.Z, gram.D
        n, p = Z.shape
        K = gram.n_outputs
        self.K_, self.p_, self.pen_, self.free_ = K, p, pen, free
        self.root_lam_ = np.sqrt(lam)
        Zp = Z.tocsr()[:, pen] if sp.issparse(Z) else Z[:, pen]
        self.Xs_ = (Zp @ sp.diags(1.0 / self.root_lam_)).tocsr() if sp.issparse(
            Z) else Zp / self.root_lam_
        kernel = self.Xs_ @ self.Xs_.T
        kernel = kernel.toarray() if sp.issparse(kernel) else kernel
        self.Dh_ = _sqrt_blocks(D)
        if K == 1:
            dh = self.Dh_[:, 0, 0]
            G = kernel * dh[:, None] * dh[None, :]
        else:
            G = np.einsum("ji,jma,ian->jmin", kernel, self.Dh_, self.Dh_).reshape(
                n * K, n * K)
        G[np.diag_indices_from(G)] += 1.0
        self.factor_ = cho_factor(G, lower=False, overwrite_a=True,
                                  check_finite=False)
        del G
        # Full-vector indices of the penalised (P) and free (U) coordinates.
        offsets = (np.arange(K) * p)[:, None]
        self.P_ = (offsets + pen).ravel()
        self.U_ = (offsets + free).ravel()
        q = self.U_.size
        self._c = 0.0
        if q:
            E = np.zeros((K * p, q))
            E[self.U_, np.arange(q)] = 1.0
            HU = np.asarray(H.matmat(E)) + self.damping * E
            self.H_PU_ = HU[self.P_]
            self.Q_ = self._solve_pen(self.H_PU_)
            S = HU[self.U_] - self.H_PU_.T @ self.Q_
            S = 0.5 * (S + S.T)
            if null_space is not None:
                # H N = 0: restore the free block's rank with c N Nᵀ and
                # project afterwards, as the primal direct solver does.
                NU = null_space[self.U_]
                self._c = max(1.0, float(np.mean(np.diag(S))))
                S += self._c * (NU @ NU.T)
            try:
                self.schur_ = cho_factor(S, lower=False, check_finite=True)
            except (LinAlgError, ValueError) as exc:
                raise ValueError(
                    "Hessian is not positive definite on its unpenalised "
                    f"coordinates (damping={self.damping:g}): the model is not "
                    "identifiable from the training data. Set damping > 0."
                ) from exc
        self.info_ = {
            "method": "direct", "form": "dual", "n_params": K * p,
            "kernel_size": n * K, "n_free": q, "damping": self.damping,
            "n_solves": 0,
        }
        return self

    # ---- the penalised block: Woodbury on the kernel -----------------------
    def _solve_pen(self, B):
        """``H_PP⁻¹ B`` for B of shape (K |P|, r)."""
        K, n = self.K_, self.Xs_.shape[0]
        r = B.shape[1]
        Y = B.reshape(K, -1, r) / self.root_lam_[None, :, None]
        T = np.stack([np.asarray(self.Xs_ @ Y[k]) for k in range(K)], axis=1)
        V = cho_solve(self.factor_, np.einsum("jmk,jkr->jmr", self.Dh_, T).reshape(
            n * K, r), check_finite=False).reshape(n, K, r)
        W = np.einsum("jkm,jmr->jkr", self.Dh_, V)
        for k in range(K):
            Y[k] -= np.asarray(self.Xs_.T @ W[:, k, :])
        Y /= self.root_lam_[None, :, None]
        return Y.reshape(-1, r)

    def _solve_once(self, B):
        X = np.empty_like(B)
        yP = self._solve_pen(B[self.P_])
        if self.U_.size:
            xU = cho_solve(self.schur_, B[self.U_] - self.H_PU_.T @ yP,
                           check_finite=False)
            X[self.U_] = xU
            yP -= self.Q_ @ xU
        X[self.P_] = yP
        return self._project(X)

    def _residual(self, X, B):
        R = np.asarray(self.op_.matmat(X)) + self.damping * X - B
        norms = np.linalg.norm(B, axis=0)
        rel = np.linalg.norm(R, axis=0) / np.where(norms > 0, norms, 1.0)
        return R, float(rel.max()) if rel.size else 0.0

    def solve(self, B):
        B = np.asarray(B, dtype=np.float64)
        squeeze = B.ndim == 1
        B = self._project(B.reshape(B.shape[0], -1))
        X = self._solve_once(B)
        R, worst = self._residual(X, B)
        if worst > 1e-10:  # one step of iterative refinement
            X -= self._solve_once(R)
            _, worst = self._residual(X, B)
        info = self.info_  # the last solve's, and running totals: bounded
        info["n_solves"] += B.shape[1]
        info["residual"] = worst
        info["max_residual"] = max(info.get("max_residual", 0.0), worst)
        if worst > 1e-6:
            warnings.warn(
                f"The dual solve left a relative residual of {worst:.3g}: the "
                "kernel is too ill-conditioned for double precision. Set "
                "damping > 0, or use method='direct' in the primal.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return X[:, 0] if squeeze else X

    # ---- leverage blocks ---------------------------------------------------
    def diag_blocks(self, Zq, batch_size=None):
        """``A_jj = (I_K ⊗ z_j)ᵀ H⁺ (I_K ⊗ z_j)`` for rows of Zq, (m, K, K).

        From the kernel between the query rows and the training rows, without
        any (K p)-sized right-hand side.
        """
        K, n = self.K_, self.Xs_.shape[0]
        m = Zq.shape[0]
        if batch_size is None:  # the (n K, K b) block C stays near 64 MB
            batch_size = int(max(1, min(m, 2**23 // (n * K * K))))
        Zq = Zq.tocsr() if sp.issparse(Zq) else np.asarray(Zq)
        A = np.empty((m, K, K))
        U = self.factor_[0]
        for start in range(0, m, batch_size):
            rows = slice(start, min(start + batch_size, m))
            Zb = Zq[rows]
            b = Zb.shape[0]
            Xq = Zb[:, self.pen_]
            Xq = (Xq @ sp.diags(1.0 / self.root_lam_)).tocsr() if sp.issparse(
                Xq) else Xq / self.root_lam_
            cross = self.Xs_ @ Xq.T
            cross = cross.toarray() if sp.issparse(cross) else np.asarray(cross)
            own = (np.asarray(Xq.multiply(Xq).sum(axis=1)).ravel() if sp.issparse(Xq)
                   else np.einsum("jf,jf->j", Xq, Xq))
            # C[(i, m), (j, l)] = Dh_i[m, l] κ(x_i, x_j)
            C = np.einsum("iml,ij->imjl", self.Dh_, cross).reshape(n * K, b * K)
            F = solve_triangular(U, C, trans="T", lower=False, check_finite=False)
            F = F.reshape(n * K, b, K)
            Ab = own[:, None, None] * np.eye(K)[None] - np.einsum(
                "ajk,ajl->jkl", F, F)
            if self.U_.size:
                Ab += self._free_part(Zb, b)
            A[rows] = Ab
        return A

    def _free_part(self, Zb, b):
        """Schur correction ``Rᵀ S⁻¹ R`` (and the null-space term) for a batch."""
        K = self.K_
        Zp = Zb[:, self.pen_]
        Q3 = self.Q_.reshape(K, self.pen_.size, -1)
        # R[j, u, l] = (Qᵀ Y_P)[u, l] - (Y_U)[u, l]
        R = np.stack([np.asarray(Zp @ Q3[l]) for l in range(K)], axis=2)
        Zf = Zb[:, self.free_]
        Zf = Zf.toarray() if sp.issparse(Zf) else np.asarray(Zf)
        nf = self.free_.size
        for l in range(K):
            R[:, l * nf:(l + 1) * nf, l] -= Zf
        q = R.shape[1]
        SR = cho_solve(self.schur_, R.transpose(1, 0, 2).reshape(q, -1),
                       check_finite=False).reshape(q, b, K).transpose(1, 0, 2)
        out = np.einsum("juk,jul->jkl", R, SR)
        if self.null_space_ is not None and self._c:
            N = self.null_space_
            N3 = N.reshape(K, self.p_, -1)
            Zd = Zb.toarray() if sp.issparse(Zb) else np.asarray(Zb)
            YN = np.einsum("jf,kfd->jkd", Zd, N3)
            out -= np.einsum("jkd,jld->jkl", YN, YN) / self._c
        return out
