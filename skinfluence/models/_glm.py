"""Shared algebra of generalised linear models.

A GLM here has ``K`` linear outputs (``K = 1`` for regression and binary
classification, ``K = n_classes`` for softmax or one-vs-rest), a parameter
matrix ``W`` of shape ``(K, p')`` flattened row-major into ``theta`` with the
intercept last in each row, and augmented features ``z = [x, 1]``.  Its
training objective is written in sum form::

    J(theta) = sum_j s_j * l(y_j, raw_j) + 1/2 * theta' diag(penalty) theta

where ``raw_j = W z_j`` and ``s_j`` carries ``C``, ``sample_weight`` and
``class_weight``.  Row ``j``'s gradient is ``g_j (x) z_j`` and its Hessian
``D_j (x) z_j z_j'`` with ``g_j = dl/draw`` (K,) and ``D_j`` (K, K): nothing
of size ``(n_rows, n_params)`` is ever formed.
"""

import copy
import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import dsyrk
from scipy.special import expit, log_expit, logsumexp, softmax

from ..solvers._base import HessianOperator
from ..solvers._dual import GramStructure
from ..utils._validation import encode_labels
from ._base import ModelAdapter

# --------------------------------------------------------------------------
# Pointwise losses.  ``objective_*`` is the loss inside J (training scale, the
# "half" squared error is fine); ``user_*`` is the loss reported to users, in
# real units (full squared error, log-loss, (smooth) hinge).
# --------------------------------------------------------------------------


class SquaredLoss:
    """Least squares: J uses 1/2 (y - raw)^2, users see (y - raw)^2."""

    name = "squared_error"

    def objective_grad_hess(self, y, raw):
        grad = raw - y.reshape(raw.shape)
        hess = np.ones((raw.shape[0], raw.shape[1], 1))
        return grad, hess

    def objective_loss(self, y, raw):
        return 0.5 * np.sum((raw - y.reshape(raw.shape)) ** 2, axis=1)

    def user_loss(self, y, raw):
        return np.sum((raw - y.reshape(raw.shape)) ** 2, axis=1)

    def user_grad(self, y, raw):
        return 2.0 * (raw - y.reshape(raw.shape))

    def loss_change(self, y, raw, shift):
        """``user_loss(raw + shift) - user_loss(raw)`` for shifts (n, K, c)."""
        r = (raw - y.reshape(raw.shape))[:, :, None]
        return np.sum(shift * (2.0 * r + shift), axis=1)


class MarginLoss:
    """A loss of the margin ``m = y_pm * raw`` with ``y_pm`` in {-1, +1}.

    Binary models have one output; one-vs-rest models (``K > 1`` outputs) sum
    one binary loss per class, so their ``D_j`` is diagonal.

    Parameters
    ----------
    kind : {"log_loss", "squared", "squared_hinge", "smooth_hinge"}
        ``"squared"`` is the squared error ``(1 - m)^2 = (y_pm - raw)^2`` of
        RidgeClassifier's least squares on +-1 codes.
    t : float, default=None
        Temperature of the smooth hinge ``t * log(1 + exp((1 - m) / t))``
        (Koh & Liang 2017, sec. 4.2), which tends to the hinge as t -> 0.
    """

    def __init__(self, kind, t=None):
        self.kind = kind
        self.t = t
        self.name = kind

    def _margins(self, y, raw):
        # y holds class indices; binary: one output, positive class 1.
        if raw.shape[1] == 1:
            y_pm = np.where(y == 1, 1.0, -1.0)[:, None]
        else:
            y_pm = np.where(y[:, None] == np.arange(raw.shape[1]), 1.0, -1.0)
        return y_pm, y_pm * raw

    def _phi(self, m):
        if self.kind == "log_loss":
            return -log_expit(m)
        if self.kind == "squared":
            return (1.0 - m) ** 2
        if self.kind == "squared_hinge":
            return np.maximum(0.0, 1.0 - m) ** 2
        u = (1.0 - m) / self.t
        return self.t * np.logaddexp(0.0, u)

    def _dphi(self, m):
        if self.kind == "log_loss":
            p = expit(-m)
            return -p, p * (1.0 - p)
        if self.kind == "squared":
            return -2.0 * (1.0 - m), np.full_like(m, 2.0)
        if self.kind == "squared_hinge":
            slack = np.maximum(0.0, 1.0 - m)
            return -2.0 * slack, 2.0 * (slack > 0)
        p = expit((1.0 - m) / self.t)
        return -p, p * (1.0 - p) / self.t

    def subgradient_parts(self, y, raw, tol):
        """The hinge's subgradient in raw: ``fixed + alpha * direction`` on
        the kinks (``on``, margins within tol of 1), alpha in [0, 1]."""
        y_pm, m = self._margins(y, raw)
        fixed = np.where(m < 1 - tol, -y_pm, 0.0)
        return fixed, np.abs(m - 1) <= tol, -y_pm

    def objective_grad_hess(self, y, raw):
        y_pm, m = self._margins(y, raw)
        d1, d2 = self._dphi(m)
        n, K = raw.shape
        hess = np.zeros((n, K, K))
        hess[:, np.arange(K), np.arange(K)] = d2
        return y_pm * d1, hess

    def objective_loss(self, y, raw):
        return np.sum(self._phi(self._margins(y, raw)[1]), axis=1)

    user_loss = objective_loss

    def user_grad(self, y, raw):
        y_pm, m = self._margins(y, raw)
        return y_pm * self._dphi(m)[0]

    def loss_change(self, y, raw, shift):
        """``user_loss(raw + shift) - user_loss(raw)`` for shifts (n, K, c)."""
        y_pm, m = self._margins(y, raw)
        moved = self._phi(m[:, :, None] + y_pm[:, :, None] * shift)
        moved -= self._phi(m)[:, :, None]
        return moved.sum(axis=1)


class SoftmaxLoss:
    """Multinomial log-loss ``logsumexp(raw) - raw[y]`` over K classes."""

    name = "log_loss"

    def objective_grad_hess(self, y, raw):
        proba = softmax(raw, axis=1)
        grad = proba.copy()
        grad[np.arange(raw.shape[0]), y] -= 1.0
        hess = -proba[:, :, None] * proba[:, None, :]
        K = raw.shape[1]
        hess[:, np.arange(K), np.arange(K)] += proba
        return grad, hess

    def objective_loss(self, y, raw):
        return logsumexp(raw, axis=1) - raw[np.arange(raw.shape[0]), y]

    user_loss = objective_loss

    def user_grad(self, y, raw):
        return self.objective_grad_hess(y, raw)[0]

    def loss_change(self, y, raw, shift):
        """``user_loss(raw + shift) - user_loss(raw)`` for shifts (n, K, c).

        ``log Σ_k p_k exp(Δ_k) - Δ_y`` with p the current probabilities:
        one exponential per entry, and no logsumexp of the base again.
        """
        top = shift.max(axis=1)
        E = np.exp(shift - top[:, None, :])
        out = np.log(np.einsum("ik,ikc->ic", softmax(raw, axis=1), E))
        out += top
        out -= shift[np.arange(shift.shape[0]), y, :]
        return out


class EpsilonInsensitiveLoss:
    """Support vector regression's ``max(0, |y - raw| - epsilon)``, made smooth.

    ``kind="smooth"`` sums two smooth hinges of temperature t,
    ``t log(1 + exp((r - eps)/t)) + t log(1 + exp((-r - eps)/t))`` with the
    residual ``r = y - raw`` (Koh & Liang's smoothing, on both sides of the
    tube), which tends to the loss as t -> 0; ``kind="squared"`` is
    LinearSVR's ``max(0, |r| - eps)^2``, once differentiable with the
    piecewise-constant second derivative liblinear itself uses.
    """

    def __init__(self, epsilon, kind, t=None):
        self.epsilon = float(epsilon)
        self.kind = kind
        self.t = t
        self.name = f"{kind}_epsilon_insensitive"

    def _residual(self, y, raw):
        return y.reshape(raw.shape) - raw

    def _phi(self, r):
        eps = self.epsilon
        if self.kind == "squared":
            return np.maximum(0.0, np.abs(r) - eps) ** 2
        t = self.t
        return t * (np.logaddexp(0.0, (r - eps) / t)
                    + np.logaddexp(0.0, (-r - eps) / t))

    def _dphi(self, r):
        """First and second derivatives in the residual."""
        eps = self.epsilon
        if self.kind == "squared":
            out = np.maximum(0.0, np.abs(r) - eps)
            return 2.0 * np.sign(r) * out, 2.0 * (out > 0)
        t = self.t
        up, down = expit((r - eps) / t), expit((-r - eps) / t)
        return up - down, (up * (1.0 - up) + down * (1.0 - down)) / t

    def subgradient_parts(self, y, raw, tol):
        """The loss's subgradient in raw: ``fixed + alpha * direction`` on
        the kinks (``on``: residuals within ``tol * max(1, epsilon)`` of
        ``+-epsilon``), alpha in [0, 1]."""
        r = self._residual(y, raw)
        eps, tol = self.epsilon, tol * max(1.0, self.epsilon)
        fixed = np.where(r > eps + tol, -1.0, np.where(r < -eps - tol, 1.0, 0.0))
        upper, lower = np.abs(r - eps) <= tol, np.abs(r + eps) <= tol
        direction = np.where(upper, -1.0, 1.0)
        if eps <= tol:  # one kink of |r|: any slope in [-1, 1]
            both = upper & lower
            fixed = np.where(both, -1.0, fixed)
            direction = np.where(both, 2.0, direction)
        return fixed, upper | lower, direction

    def objective_grad_hess(self, y, raw):
        d1, d2 = self._dphi(self._residual(y, raw))
        return -d1, d2[:, :, None]  # r = y - raw

    def objective_loss(self, y, raw):
        return np.sum(self._phi(self._residual(y, raw)), axis=1)

    user_loss = objective_loss

    def user_grad(self, y, raw):
        return -self._dphi(self._residual(y, raw))[0]

    def loss_change(self, y, raw, shift):
        """``user_loss(raw + shift) - user_loss(raw)`` for shifts (n, K, c)."""
        r = self._residual(y, raw)[:, :, None]
        return (self._phi(r - shift) - self._phi(r)).sum(axis=1)


def _expm1_over(k, u):
    """``(exp(k u) - 1) / k``, and its limit ``u`` at ``k = 0``."""
    return u if k == 0 else np.expm1(k * u) / k


class TweedieLoss:
    """Half Tweedie deviance of power p with a log or identity link.

    The losses of scikit-learn's PoissonRegressor (p = 1), GammaRegressor
    (p = 2) and TweedieRegressor, written from the unit deviance
    (Jørgensen 1997; scikit-learn's ``HalfTweedieLoss`` and
    ``HalfTweedieLossIdentity``): with the mean ``mu`` (``exp(raw)`` or
    ``raw``), ``l = mu^(2-p) / (2-p) - y mu^(1-p) / (1-p)`` up to a term in y
    alone, whose limits at p = 1 and 2 are ``mu - y log mu`` and
    ``log mu + y / mu``. Written here rather than taken from scikit-learn's
    private ``sklearn._loss`` so that it runs on arrays of any shape (the
    Newton estimate evaluates it at many parameter vectors at once); the
    tests hold the two equal.

    J uses the half deviance; users see the deviance itself, in the units of
    ``sklearn.metrics.mean_tweedie_deviance`` (for p = 0 with the identity
    link, the squared error).

    Parameters
    ----------
    power : float
        The Tweedie power p: 0 normal, 1 Poisson, 2 Gamma, 3 inverse Gauss.
    link : {"log", "identity"}
        The link mapping the raw prediction to the mean.
    """

    def __init__(self, power, link):
        self.power = float(power)
        self.link = link
        self.name = {1.0: "poisson", 2.0: "gamma"}.get(
            self.power, f"tweedie(power={self.power:g})")
        self.name += "" if link == "log" else " (identity link)"

    def check_y(self, y):
        """Refuse targets outside the deviance's domain, as scikit-learn does."""
        p = self.power
        if p <= 0:
            ok = np.all(np.isfinite(y))
        elif p < 2:
            ok = np.all(y >= 0)
        else:
            ok = np.all(y > 0)
        if not ok:
            domain = "real" if p <= 0 else "non-negative" if p < 2 else "positive"
            raise ValueError(f"y must be {domain} for the {self.name} deviance; "
                             f"got min(y) = {np.min(y):g}.")

    def _log_mu(self, raw):
        if self.link == "log":
            return raw
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(raw)

    def objective_grad_hess(self, y, raw):
        y = y.reshape(raw.shape)
        p = self.power
        if self.link == "log":
            # d/draw of l: mu^(2-p) - y mu^(1-p); second derivative
            # (2-p) mu^(2-p) - (1-p) y mu^(1-p), negative where p < 1 or
            # p > 2 and mu is far from y (the loss is not convex there).
            a, b = np.exp((2 - p) * raw), y * np.exp((1 - p) * raw)
            grad, hess = a - b, (2 - p) * a - (1 - p) * b
        else:
            mu_p = raw ** -p if p else np.ones_like(raw)
            grad = mu_p * (raw - y)
            hess = mu_p * ((1 - p) + p * y / raw)
        return grad, hess[:, :, None]

    def objective_loss(self, y, raw):
        # l up to a term in y: (mu^k - 1)/k at k = 2-p and 1-p, exact limits.
        y = y.reshape(raw.shape)
        u = self._log_mu(raw)
        p = self.power
        return np.sum(_expm1_over(2 - p, u) - y * _expm1_over(1 - p, u), axis=1)

    def user_loss(self, y, raw):
        """The unit deviance ``2 (l(mu) - l(y))``, zero where ``mu = y``."""
        y = y.reshape(raw.shape)
        p = self.power
        mu = np.exp(raw) if self.link == "log" else raw
        with np.errstate(divide="ignore", invalid="ignore"):
            if p == 0:
                dev = (y - mu) ** 2
            elif p == 1:
                dev = 2 * (np.where(y > 0, y * np.log(y / mu), 0.0) - y + mu)
            elif p == 2:
                dev = 2 * (np.log(mu / y) + y / mu - 1)
            else:
                dev = 2 * (np.maximum(y, 0) ** (2 - p) / ((1 - p) * (2 - p))
                           - y * mu ** (1 - p) / (1 - p) + mu ** (2 - p) / (2 - p))
        return np.sum(dev, axis=1)

    def user_grad(self, y, raw):
        return 2.0 * self.objective_grad_hess(y, raw)[0]

    def loss_change(self, y, raw, shift):
        """``user_loss(raw + shift) - user_loss(raw)`` for shifts (n, K, c).

        From ``mu^k (exp(k d) - 1) / k`` with d the change of ``log mu``: no
        difference of two large deviances.
        """
        y = y.reshape(raw.shape)[:, :, None]
        p = self.power
        u = self._log_mu(raw)[:, :, None]
        if self.link == "log":
            d = shift
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                d = np.log1p(shift / raw[:, :, None])
        change = (np.exp((2 - p) * u) * _expm1_over(2 - p, d)
                  - y * np.exp((1 - p) * u) * _expm1_over(1 - p, d))
        return 2.0 * change.sum(axis=1)


# --------------------------------------------------------------------------
# Feature algebra on Z (dense or sparse, augmented with the intercept column)
# --------------------------------------------------------------------------


def augment(X, fit_intercept):
    """Append the intercept column of ones; keeps sparse input sparse."""
    if not fit_intercept:
        return X.tocsr() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    if sp.issparse(X):
        ones = sp.csr_matrix(np.ones((X.shape[0], 1)))
        return sp.hstack([X, ones], format="csr", dtype=np.float64)
    Z = np.empty((X.shape[0], X.shape[1] + 1))
    Z[:, :-1] = X
    Z[:, -1] = 1.0
    return Z


def weighted_gram(Z, w):
    """``Z' diag(w) Z`` as a dense array, for ``w >= 0`` or any sign."""
    if sp.issparse(Z):
        return np.asarray((Z.T @ Z.multiply(w[:, None])).todense())
    if np.all(w >= 0):
        # syrk computes one triangle: half the flops of Z.T @ (w * Z).
        A = np.sqrt(w)[:, None] * Z
        # A.T is Fortran-ordered: syrk takes it without a copy.
        G = dsyrk(1.0, A.T, trans=0, lower=0)
        return np.triu(G) + np.triu(G, 1).T
    return Z.T @ (w[:, None] * Z)


def right_contract(L, Z, W):
    """``out[m, j] = sum_l (L[m, l-block] . z_j) * W[j, l]``.

    L is (m, K * p') dense, Z (n_chunk, p') dense or sparse and W (n_chunk, K).
    This is the one kernel behind every score: a (test) row of H^-1 applied
    to training rows ``w_j (x) z_j``, formed only for a dense chunk with
    several outputs (n_chunk x K p').
    """
    K = W.shape[1]
    p = Z.shape[1]
    if K > 1 and not sp.issparse(Z):
        # One GEMM against the rows w_j (x) z_j of the chunk: no pass over
        # the (m, n_chunk) result per output.
        return L @ kron_rows(W, Z).T
    out = None
    for k in range(K):
        block = L[:, k * p : (k + 1) * p]
        prod = np.asarray((Z @ block.T).T if sp.issparse(Z) else block @ Z.T)
        prod *= W[:, k]
        if out is None:
            out = prod
        else:
            out += prod
    return out


class _SparseGram:
    """``V -> Z' diag(w) Z V + diag(penalty) V`` for sparse Z, cache-blocked.

    Both sparse products are memory-bound: each non-zero of Z reads (or
    updates) a whole row of the dense operand.  Taking the columns of V a few
    at a time keeps that operand in the last-level cache, which is about
    twice as fast as one product over all columns.  The column blocks are
    independent, so with ``n_threads > 1`` they run in threads: scipy's
    sparse kernels release the GIL and are single-threaded otherwise.
    """

    # Bytes of one dense column block: the working set of both products
    # (measured best at ~8 MiB on a 32 MiB L3 shared by two threads).
    block_bytes = 2**23

    def __init__(self, Z, w, penalty, n_threads=1):
        self.Z = Z.tocsr()
        self.ZT = Z.T.tocsr()  # row access for the transposed product
        self.w, self.penalty, self.n_threads = w[:, None], penalty[:, None], n_threads
        self.block = int(np.clip(self.block_bytes // (8 * Z.shape[1]), 4, 64))

    def _block(self, V, out, cols):
        Vb = np.ascontiguousarray(V[:, cols])
        R = np.asarray(self.Z @ Vb)
        R *= self.w
        Ob = np.asarray(self.ZT @ R)
        Ob += self.penalty * Vb
        out[:, cols] = Ob

    def __call__(self, V):
        V = V.reshape(V.shape[0], -1)
        out = np.empty_like(V, dtype=np.float64)
        blocks = [slice(i, i + self.block) for i in range(0, V.shape[1], self.block)]
        if self.n_threads > 1 and len(blocks) > 1:
            with ThreadPoolExecutor(min(self.n_threads, len(blocks))) as pool:
                list(pool.map(lambda cols: self._block(V, out, cols), blocks))
        else:
            for cols in blocks:
                self._block(V, out, cols)
        return out


def transformed_target(ttr, y):
    """``y`` as a TransformedTargetRegressor's regressor was fitted on it."""
    y = np.asarray(y, dtype=np.float64)
    return ttr.transformer_.transform(y.reshape(-1, 1)).reshape(y.shape)


def kron_rows(W, Z):
    """Rows ``w_j (x) z_j`` of shape (n, K * p'), dense; for small row counts."""
    Zd = Z.toarray() if sp.issparse(Z) else Z
    return (W[:, :, None] * Zd[:, None, :]).reshape(Zd.shape[0], -1)


class GLMAdapter(ModelAdapter):
    """Analytic derivatives of a fitted linear model.

    Parameters
    ----------
    coef : ndarray of shape (K, n_features)
    intercept : ndarray of shape (K,) or None
        None when the model has no intercept.
    loss : SquaredLoss, MarginLoss or SoftmaxLoss
    scale : float
        Common factor of every ``s_j`` (``C`` or ``1 / n``).
    penalty : ndarray of shape (n_params,)
        Diagonal of the penalty matrix Lambda.
    classes : ndarray or None
    class_weight : ndarray of shape (n_classes,) or None
        Per-class factor of ``s_j``, indexed by encoded label.
    reweighting : BalancedWeights, MeanWeights or None
        Set where the row factors move when a row is left out:
        ``class_weight="balanced"``, or an objective that is a mean over
        the sample weights (see :mod:`skinfluence.models._weights`).
    smooth : bool
        False for models fitted with the (non-smooth) hinge: their objective
        is only approximated by the smooth hinge, so stationarity is not
        checked.
    linear : ndarray of shape (n_params,) or None
        A linear term ``linear' theta`` of J: an l1 penalty on the active
        set, ``l1 * sign(theta)``, constant while no coefficient crosses 0.
    """

    family = "glm"
    #: Whether ``features(X)`` is ``[X, 1]``: the parameters act on the
    #: model's inputs themselves (not on kernel features or an active set).
    raw_features = True
    #: Whether the Newton estimate is offered.
    newton = True
    #: Whether a scale parameter is fitted jointly beside theta
    #: (HuberRegressor's sigma, see :mod:`skinfluence.models._huber`).
    joint_scale = False

    def __init__(self, *, estimator, coef, intercept, loss, scale, penalty,
                 classes=None, class_weight=None, reweighting=None, smooth=True,
                 linear=None, description=""):
        self.estimator = estimator
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = None if intercept is None else np.asarray(
            intercept, dtype=np.float64)
        self.loss = loss
        self.scale = float(scale)
        self.penalty = np.asarray(penalty, dtype=np.float64)
        self.classes = classes
        self.class_weight = class_weight
        self.reweighting = reweighting
        self.smooth = smooth
        self.linear = 0.0 if linear is None else np.asarray(linear, dtype=np.float64)
        self.description = description

    # ---- parameters -----------------------------------------------------
    @property
    def fit_intercept(self):
        return self.intercept is not None

    @property
    def n_outputs(self):
        return self.coef.shape[0]

    @property
    def n_params(self):
        return self.coef.size + (0 if self.intercept is None else self.intercept.size)

    @property
    def theta(self):
        if self.intercept is None:
            return self.coef.ravel().copy()
        return np.hstack([self.coef, self.intercept[:, None]]).ravel()

    def parameters(self):
        """Every fitted parameter a row moves: ``theta_``'s layout."""
        return self.theta

    def fitted_model(self):
        """The fitted model that holds theta: the estimator, or the
        ``regressor_`` of a TransformedTargetRegressor, read afresh."""
        est = self.estimator
        if type(est).__name__ == "TransformedTargetRegressor":
            return est.regressor_
        return est

    def read_theta(self):
        """Parameters as the wrapped model holds them now, in ``theta`` layout."""
        coef = self.fitted_model().coef_
        coef = np.asarray(coef.toarray() if sp.issparse(coef) else coef,
                          dtype=np.float64)  # libsvm's, after sparse X
        if coef.size != self.coef.size:
            return coef.ravel()
        coef = coef.reshape(self.coef.shape)
        if self.intercept is None:
            return coef.ravel()
        intercept = np.ravel(self.fitted_model().intercept_)[: self.intercept.size]
        return np.hstack([coef, np.asarray(intercept, float)[:, None]]).ravel()

    def with_theta(self, theta):
        """A copy of this adapter at other parameters (same objective)."""
        K = self.n_outputs
        W = np.asarray(theta, dtype=np.float64).reshape(K, -1)
        new = copy.copy(self)
        if self.intercept is None:
            new.coef = W.copy()
        else:
            new.coef, new.intercept = W[:, :-1].copy(), W[:, -1].copy()
        return new

    def null_space(self):
        """Orthonormal basis of directions the objective cannot see, or None.

        Softmax raw predictions do not change when the same vector is added to
        every class's weights; the penalty removes that freedom only on the
        coordinates it covers (not on unpenalised intercepts).
        """
        if not isinstance(self.loss, SoftmaxLoss):
            return None
        K = self.n_outputs
        p = self.n_params // K
        free = np.flatnonzero(self.penalty[:p] == 0)
        if free.size == 0:
            return None
        basis = np.zeros((self.n_params, free.size))
        for i, f in enumerate(free):
            basis[f::p, i] = 1.0 / np.sqrt(K)
        return basis

    # ---- data -------------------------------------------------------------
    def features(self, X):
        return augment(X, self.fit_intercept)

    def encode_y(self, y):
        y = np.asarray(y)
        if type(self.estimator).__name__ == "TransformedTargetRegressor":
            # Fitted on the transformed target: its loss is in that space.
            y = transformed_target(self.estimator, y)
        if self.classes is None:
            y = y.astype(np.float64)
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.ravel()
            if y.ndim != 1:
                raise ValueError(
                    f"y must be 1-D for this regressor; got shape {y.shape}."
                )
            if hasattr(self.loss, "check_y"):
                self.loss.check_y(y)
            return y
        y = y.ravel() if (y.ndim == 2 and y.shape[1] == 1) else y
        return encode_labels(y, self.classes)

    def row_scale(self, y_enc, sample_weight=None):
        s = np.full(y_enc.shape[0], self.scale)
        if sample_weight is not None:
            s = s * sample_weight
        if self.class_weight is not None:
            s = s * self.class_weight[y_enc]
        return s

    def class_gradients(self, Z, y_enc, s, grad):
        """``G[:, c]``: sum of ``s_j g_j (x) z_j`` over the rows of group c.

        The groups are the reweighting's (classes under
        ``class_weight="balanced"``, all rows for a mean-form objective).
        Shape (n_params, n_groups).
        """
        group = self.reweighting.index(y_enc)
        G = np.empty((self.n_params, self.reweighting.n_groups))
        for c in range(G.shape[1]):
            sg = np.where((group == c)[:, None], s[:, None] * grad, 0.0)
            G[:, c] = np.asarray(Z.T @ sg).T.ravel()
        return G

    def raw_prediction(self, Z):
        W = self.coef
        if self.intercept is not None:
            W = np.hstack([W, self.intercept[:, None]])
        raw = Z @ W.T
        return np.asarray(raw)

    # ---- derivatives ------------------------------------------------------
    def pointwise_grad_hess(self, y_enc, raw):
        return self.loss.objective_grad_hess(y_enc, raw)

    def loss_from_raw(self, y_enc, raw):
        return self.loss.user_loss(y_enc, raw)

    def user_grad(self, y_enc, raw):
        return self.loss.user_grad(y_enc, raw)

    def objective_gradient(self, Z, y_enc, s):
        grad, _ = self.pointwise_grad_hess(y_enc, self.raw_prediction(Z))
        G = np.asarray(Z.T @ (s[:, None] * grad)).T  # (K, p')
        return G.ravel() + self.penalty * self.theta + self.linear

    def objective_value(self, Z, y_enc, s):
        loss = self.loss.objective_loss(y_enc, self.raw_prediction(Z))
        theta = self.theta
        return float(s @ loss + theta @ (0.5 * self.penalty * theta + self.linear))

    def hessian(self, Z, s, hess):
        """Dense ``sum_j s_j D_j (x) z_j z_j' + diag(penalty)``."""
        K = self.n_outputs
        p = Z.shape[1]
        H = np.zeros((K * p, K * p))
        for k in range(K):
            for m in range(k, K):
                if m != k and not np.any(hess[:, k, m]):
                    continue  # one-vs-rest outputs do not interact
                block = weighted_gram(Z, s * hess[:, k, m])
                H[k * p:(k + 1) * p, m * p:(m + 1) * p] = block
                if m != k:
                    H[m * p:(m + 1) * p, k * p:(k + 1) * p] = block.T
        H[np.diag_indices_from(H)] += self.penalty
        return H

    def hessian_diagonal(self, Z, s, hess):
        """``diag(H)`` without forming H, shape (n_params,)."""
        Z2 = Z.multiply(Z) if sp.issparse(Z) else Z * Z
        K = self.n_outputs
        diag = np.concatenate(
            [np.asarray(Z2.T @ (s * hess[:, k, k])).ravel() for k in range(K)]
        )
        return diag + self.penalty

    def hessian_operator(self, Z, s, hess, n_threads=1):
        """H as a matrix-free operator; mini-batches for stochastic solvers.

        For sparse Z (one output), products run through :class:`_SparseGram`:
        cache-blocked over the columns of V, in ``n_threads`` threads.
        """
        # Partials of methods, not closures: a fitted estimator pickles.
        matmat = functools.partial(self.hvp, Z, s, hess)
        if sp.issparse(Z) and self.n_outputs == 1:
            matmat = _SparseGram(Z, s * hess[:, 0, 0], self.penalty, n_threads)
        return HessianOperator(
            self.n_params,
            matmat,
            diagonal=self.hessian_diagonal(Z, s, hess),
            sample=functools.partial(self._sample_hvp, Z, s, hess),
            gram=self.gram_structure(Z, s, hess),
        )

    def _sample_hvp(self, Z, s, hess, rng, batch_size):
        """Products with an unbiased estimate of H on a random batch of rows."""
        n = Z.shape[0]
        rows = rng.choice(n, size=min(batch_size, n), replace=False)
        # Rescaled so that the batch estimates the full sum.
        sb = s[rows] * (n / len(rows))
        return functools.partial(self.hvp, Z[rows], sb, hess[rows])

    def gram_structure(self, Z, s, hess):
        """H as ``diag(penalty) + Ψᵀ D Ψ``, for the dual solve and the choice."""
        return GramStructure(Z, s[:, None, None] * hess, self.penalty)

    def hvp(self, Z, s, hess, V):
        """``H @ V`` without forming H; V has shape (n_params, k)."""
        K = self.n_outputs
        if K == 1:  # the common case, without stacking copies
            R = np.asarray(Z @ V)
            R *= (s * hess[:, 0, 0])[:, None]
            out = np.asarray(Z.T @ R)
            out += self.penalty[:, None] * V
            return out
        p = Z.shape[1]
        V3 = V.reshape(K, p, -1)
        # raw directions: (n, K, k)
        R = np.stack([np.asarray(Z @ V3[k]) for k in range(K)], axis=1)
        R = np.einsum("nkl,nlc->nkc", s[:, None, None] * hess, R)
        out = np.stack([np.asarray(Z.T @ R[:, k, :]) for k in range(K)], axis=0)
        return out.reshape(K * p, -1) + self.penalty[:, None] * V
