"""KernelRidge: ridge regression in the kernel's feature space, exactly.

KernelRidge minimises ``sum_j sw_j (y_j - f(x_j))^2 + alpha ||f||_H^2`` over
the kernel's function space; its solution, and that of the objective
without any training row (the representer theorem), lies in the span of
``k(., x_j)``. With the eigendecomposition ``K = V diag(lambda) V'`` of the
training kernel (its numerical range kept), the features

    z(x) = diag(lambda)^(-1/2) V' k(X_fit, x)

make that span a Euclidean space in which the model is Ridge without
intercept: ``f(x) = z(x)' theta``, ``||f||_H = ||theta||`` and
``theta = diag(lambda)^(1/2) V' dual_coef_``. (The training rows' features
are ``V diag(lambda)^(1/2)``; any ``k(X_fit, x)`` lies in the range of K,
the kernel being positive semi-definite.) Influence is then that of least
squares: exact for both estimates, the Newton step being the closed-form
leave-one-out refit.
"""

import numpy as np
from sklearn.metrics.pairwise import pairwise_kernels

from ._glm import GLMAdapter, SquaredLoss


def kernel_of(est, X, Y):
    """``k(X, Y)`` with the fitted KernelRidge's kernel and parameters."""
    if callable(est.kernel):
        params = est.kernel_params or {}
    else:
        params = {"gamma": est.gamma, "degree": est.degree, "coef0": est.coef0}
    return pairwise_kernels(X, Y, metric=est.kernel, filter_params=True, **params)


class KernelRidgeAdapter(GLMAdapter):
    """GLMAdapter of a KernelRidge on the kernel's eigenfeatures."""

    raw_features = False

    def __init__(self, est, **kwargs):
        K = kernel_of(est, est.X_fit_, est.X_fit_) if est.kernel != "precomputed" else (
            np.asarray(est.X_fit_, dtype=np.float64))
        K = 0.5 * (K + K.T)
        lam, V = np.linalg.eigh(K)
        # The numerical range: eigenvalues above rounding of the largest.
        keep = lam > K.shape[0] * np.finfo(np.float64).eps * max(lam[-1], 0.0)
        if not np.any(keep):
            raise ValueError("KernelRidge's training kernel is zero: there is no "
                             "model to take the influence of.")
        self.root = np.sqrt(lam[keep])
        self.basis = V[:, keep]
        super().__init__(estimator=est, coef=self._theta_of(est)[None],
                         intercept=None, **kwargs)

    def _theta_of(self, est):
        return self.root * (self.basis.T @ np.asarray(est.dual_coef_, float).ravel())

    def features(self, X):
        est = self.fitted_model()
        k = X if est.kernel == "precomputed" else kernel_of(est, X, est.X_fit_)
        Z = np.asarray(k @ self.basis)
        Z /= self.root
        return Z

    def read_theta(self):
        est = self.fitted_model()
        coef = np.asarray(est.dual_coef_, dtype=np.float64)
        if coef.shape[0] != self.basis.shape[0]:
            return coef.ravel()  # refitted on other rows: differs
        return self._theta_of(est)


def kernel_ridge_adapter(est, y, sample_weight, n_train):
    if np.ndim(est.dual_coef_) == 2 and np.shape(est.dual_coef_)[1] != 1:
        raise ValueError(
            f"KernelRidge was fitted on {np.shape(est.dual_coef_)[1]} targets; "
            "skinfluence supports single-target regression.")
    alpha = np.asarray(est.alpha, dtype=np.float64)
    if alpha.size != 1:
        raise ValueError("KernelRidge with one alpha per target is not supported.")
    adapter = KernelRidgeAdapter(
        est,
        loss=SquaredLoss(),
        scale=1.0,
        penalty=np.full(1, 0.0),  # set below, once the rank is known
        description="KernelRidge: least squares in the kernel's feature space",
    )
    adapter.penalty = np.full(adapter.n_params, float(alpha.ravel()[0]))
    return adapter
