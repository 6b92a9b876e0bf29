"""Nyström preconditioner for CG: a low-rank part from one sketch of H.

Two forms, both built from one product ``(H + damping I) Omega`` with an
``(n_params, rank)`` sketch ``Omega``, and applied at ``4 n_params rank k``
flops to ``k`` residuals; ``Omega``, the product and the factor are each
``n_params x rank`` floats.

* The operator knows its diagonal (GLMs): ``Omega`` holds the columns of the
  ``rank`` largest diagonal entries (column Nyström, i.e. a partial Cholesky
  pivoted on the diagonal), and the preconditioner is that low-rank part plus
  the diagonal of what it leaves out::

      P = H_hat + diag(H + damping I - H_hat),  H_hat = Y (Omega' Y)^+ Y'

  On the pivots P equals H exactly; elsewhere it is Jacobi on the Schur
  complement of the pivots. It needs no random numbers. It removes what
  Jacobi cannot: the coupling through a few dense columns (the intercept,
  frequent words), which gives the Jacobi-scaled Hessian of a text model an
  outlying eigenvalue at each end of its spectrum.
* No diagonal (torch): the randomized Nyström preconditioner of Frangella,
  Tropp & Udell (2023) from a seeded Gaussian sketch,
  ``P^-1 = lambda_r U diag(lambda)^-1 U' + (I - U U')``, with
  ``U diag(lambda) U'`` the Nyström approximation of ``H + damping I``.

Both are symmetric positive definite, applied as a diagonal plus a low-rank
term, ``P^-1 R = d * R + V (c * (V' R))``: CG folds the diagonal into its
Jacobi step and adds the low-rank term with two BLAS products.

References
----------
Frangella, Tropp & Udell, "Randomized Nyström preconditioning", SIAM J.
Matrix Anal. Appl. 44(2), 2023. Tropp, Yurtsever, Udell & Cevher, "Fixed-rank
approximation of a positive-semidefinite matrix from streaming data", NeurIPS
2017 (the stable Nyström algorithm). Harbrecht, Peters & Schneider, "On the
low-rank approximation by the pivoted Cholesky decomposition", Appl. Numer.
Math. 62(4), 2012.
"""

from numbers import Integral

import numpy as np
from scipy import linalg
from sklearn.utils import check_random_state
from threadpoolctl import ThreadpoolController

#: Floor of the diagonal part, relative to ``diag(H) + damping``: the exact
#: residual diagonal is zero on the pivots, and this keeps P definite with a
#: capacitance ``I + G'G`` of condition at most 1 / _FLOOR.
_FLOOR = 1e-3


def check_rank(rank):
    """``rank`` as CG's Nyström takes it: None (automatic) or an int >= 1."""
    if rank is None:
        return None
    if isinstance(rank, bool) or not isinstance(rank, Integral) or rank < 1:
        raise ValueError(
            f"rank must be a positive integer or None (automatic); got {rank!r}."
        )
    return int(rank)


def _not_pd(value, damping):
    return ValueError(
        f"Hessian is not positive definite (the Nyström sketch found curvature "
        f"{value:.3g} along one of its directions, damping={damping:g}); set "
        f"damping > 0, e.g. damping={max(1e-6, 10 * abs(value)):.1g}."
    )


class NystromPreconditioner:
    """Approximate inverse of ``H + damping I`` for preconditioned CG.

    Parameters
    ----------
    rank : int
        Columns of the sketch (at most ``n_params``).
    random_state : int, RandomState instance or None, default=0
        Seeds the Gaussian sketch (operators without a diagonal only).

    Attributes
    ----------
    rank_ : int
        Rank of the Nyström approximation (directions of zero curvature, as
        in a known null space, are dropped).
    sketch_ : str
        ``"pivoted"`` or ``"gaussian"``.
    inv_diag_ : ndarray of shape (n_params,)
    basis_ : ndarray of shape (n_params, r)
    coef_ : ndarray of shape (r,)
        ``P^-1 = diag(inv_diag_) + basis_ diag(coef_) basis_'``.
    """

    def __init__(self, rank, *, random_state=0):
        self.rank = rank
        self.random_state = random_state

    def fit(self, op, *, damping=0.0, null_space=None):
        """Sketch ``op`` (a HessianOperator): one ``matmat`` of ``rank`` columns."""
        n = op.n_params
        r = min(check_rank(self.rank) or 1, n)
        rng = check_random_state(self.random_state)  # validated either way
        diag = None if op.diagonal is None else np.asarray(op.diagonal) + damping
        if diag is not None:
            # The r largest diagonal entries, ties broken by index.
            pivots = np.sort(np.argsort(-diag, kind="stable")[:r])
            Omega = np.zeros((n, r))
            Omega[pivots, np.arange(r)] = 1.0
        else:
            Omega = rng.standard_normal((n, r))
        if null_space is not None:
            Omega -= null_space @ (null_space.T @ Omega)
        # The small factorisations run on one BLAS thread: with two, eigh of
        # a 200 x 200 matrix took 0.8 s instead of 0.03 s on a loaded
        # two-core machine (threads waiting for each other).
        blas = ThreadpoolController()
        if diag is None:
            with blas.limit(limits=1, user_api="blas"):
                Omega = np.linalg.qr(Omega)[0]
        Y = np.asarray(op.matmat(Omega), dtype=np.float64)
        if damping:
            Y += damping * Omega
        with blas.limit(limits=1, user_api="blas"):
            if diag is None:
                self._fit_gaussian(Omega, Y, damping)
            elif null_space is None:  # H[S, S] is read off the product
                del Omega
                self._fit_pivoted(Y, diag, damping, Y[pivots])
            else:
                self._fit_pivoted(Y, diag, damping, Omega.T @ Y)
        return self

    def _fit_pivoted(self, Y, diag, damping, M):
        """From ``Y = H Omega`` and ``M = Omega' H Omega``."""
        self.sketch_ = "pivoted"
        theta, V = linalg.eigh((M + M.T) / 2)
        top = max(theta[-1], 0.0)
        if theta[0] < -1e-8 * top:
            raise _not_pd(theta[0], damping)
        # Core pseudo-inverse: a projected pivot (null space) or a repeated
        # column leaves a zero eigenvalue, which carries no curvature.
        keep = theta > 1e-12 * top
        self.rank_ = int(keep.sum())
        F = Y @ (V[:, keep] / np.sqrt(theta[keep]))  # H_hat = F F'
        del Y
        resid = diag - np.einsum("ij,ij->i", F, F)
        resid = np.maximum(resid, np.maximum(_FLOOR * diag, np.finfo(float).tiny))
        # P = D + F F' = D^1/2 (I + G G') D^1/2 with G = D^-1/2 F = U sigma W':
        # P^-1 = D^-1/2 (I - U sigma^2 / (1 + sigma^2) U') D^-1/2.  U and sigma
        # come from eigh of the small Gram G'G (one BLAS product; our own
        # choice over an SVD of the tall G, several times slower).  The
        # squaring blurs sigma^2 below ~eps ||G||^2 (each row of G has norm^2
        # at most 1 / _FLOOR); directions with sigma^2 <= 1e-8 change P by
        # less than that share and are dropped.
        scale = 1.0 / np.sqrt(resid)
        F *= scale[:, None]
        sigma2, W = linalg.eigh(F.T @ F)
        keep = sigma2 > 1e-8
        U = F @ (W[:, keep] / np.sqrt(sigma2[keep]))
        del F
        # P^-1 = D^-1 + V c V' with V = D^-1/2 U.
        U *= scale[:, None]
        self.inv_diag_ = scale**2
        self.basis_ = U
        self.coef_ = -sigma2[keep] / (1.0 + sigma2[keep])

    def _fit_gaussian(self, Omega, Y, damping):
        # Frangella, Tropp & Udell, Algorithm 2.1 (the shifted, stable Nyström
        # of Tropp et al. 2017), written here with scipy's Cholesky and SVD.
        self.sketch_ = "gaussian"
        n = Omega.shape[0]
        shift = np.sqrt(n) * np.finfo(float).eps * np.linalg.norm(Y)
        Y += shift * Omega
        M = Omega.T @ Y
        try:
            C = linalg.cholesky((M + M.T) / 2, lower=True)
        except linalg.LinAlgError:
            raise _not_pd(float(linalg.eigvalsh(M, subset_by_index=[0, 0])[0])
                          - shift, damping) from None
        B = linalg.solve_triangular(C, Y.T, lower=True).T
        del Y
        U, sigma, _ = linalg.svd(B, full_matrices=False, overwrite_a=True)
        lam = sigma**2 - shift
        keep = lam > 1e-12 * max(lam[0], 0.0)
        U, lam = U[:, keep], lam[keep]
        self.rank_ = int(keep.sum())
        if lam.size == 0:
            raise _not_pd(float(sigma[0] ** 2 - shift), damping)
        # P^-1 = lam_r U diag(lam)^-1 U' + (I - U U') = I + U (lam_r / lam - 1) U'
        self.inv_diag_ = np.ones(n)
        self.basis_ = np.ascontiguousarray(U)
        self.coef_ = lam[-1] / lam - 1.0

    def solve(self, R):
        """``P^-1 R`` for residuals R of shape (n_params, k)."""
        out = self.inv_diag_[:, None] * R
        out += self.basis_ @ (self.coef_[:, None] * (self.basis_.T @ R))
        return out
