"""HuberRegressor: robust regression with its scale fitted jointly.

scikit-learn's HuberRegressor minimises, in ``_huber_loss_and_gradient``
(Owen's concomitant scale, 2007), over the weights w, the intercept b and
the scale sigma > 0::

    J(w, b, sigma) = sum_j sw_j l(r_j, sigma) + alpha ||w||^2,
    l(r, sigma) = sigma + r^2 / sigma                  |r| <= epsilon sigma,
                  sigma (1 - epsilon^2) + 2 epsilon |r|   otherwise,

with the residual ``r_j = y_j - x_j'w - b``: the intercept is not
penalised. sigma is one of the parameters a training row moves, so theta is
``(w, b, sigma)`` and every score is in the units of ``l``, the row's term
of this objective (the test loss at the fitted scale, and its change when
leaving a row out moves the scale too).

l is once differentiable: its value and first derivatives are continuous
where a row crosses ``|r| = epsilon sigma``, its second derivatives jump
there (from ``2 / sigma`` in the residual to 0). The Hessian used is the one
of the rows' sides: an inlier's curvature, rank one, ``(2 / sigma) u u'``
with ``u = (z, r / sigma)``; none for an outlier, whose loss is linear in
(f, sigma), so it moves theta only through its bounded gradient
``2 epsilon z``, which is what makes the fit robust. With no row exactly on
a kink (almost surely, for continuous data) J is twice differentiable at
theta-hat and the inlier/outlier split locally constant, so the influence
function is the exact derivative of the refit under re-weighting; a removal
large enough to move a row across a kink changes H, which first order does
not follow (and the Newton estimate is not offered).

The algebra: over the weights and intercept theta_f = (w, b) the model is a
GLM with the pointwise loss at the fitted scale (:class:`HuberLoss`), whose
Hessian ``A`` the solvers factorise as for any GLM. sigma adds one bordering
row and column, ``H = [[A, c], [c', d]]`` (``c = sum_j sw_j l_fs z_j``,
``d = sum_j sw_j l_ss``), taken through its Schur complement
``delta = d - c' A^-1 c``: a row of gradient ``(g_j z_j, q_j)`` moves

    sigma by  ds_j = (q_j - g_j z_j' A^-1 c) / delta,
    theta_f by  A^-1 (g_j z_j) - A^-1 c ds_j,

a rank-one term beside the GLM one, carried as the class re-weighting's
(:meth:`skinfluence._glm_path.GLMEngine._row_terms`).
"""

import numpy as np

from ._glm import GLMAdapter
from ._linear import _penalty_vector


class HuberLoss:
    """HuberRegressor's row loss ``l(y - raw, sigma)`` at a fixed scale.

    The derivatives in the raw prediction f are the GLM's pointwise ones;
    :meth:`scale_terms` gives those in sigma.
    """

    name = "huber"

    def __init__(self, epsilon, sigma):
        self.epsilon = float(epsilon)
        self.sigma = float(sigma)

    def _residual(self, y, raw):
        r = y.reshape(raw.shape) - raw
        # scikit-learn's mask: outliers where |r| > epsilon sigma.
        return r, np.abs(r) <= self.epsilon * self.sigma

    def objective_grad_hess(self, y, raw):
        r, inlier = self._residual(y, raw)
        sig, eps = self.sigma, self.epsilon
        grad = np.where(inlier, -2.0 * r / sig, -2.0 * eps * np.sign(r))
        hess = np.where(inlier, 2.0 / sig, 0.0)
        return grad, hess[:, :, None]

    def objective_loss(self, y, raw):
        r, inlier = self._residual(y, raw)
        sig, eps = self.sigma, self.epsilon
        loss = np.where(inlier, sig + r**2 / sig,
                        sig * (1.0 - eps**2) + 2.0 * eps * np.abs(r))
        return loss[:, 0]

    user_loss = objective_loss

    def user_grad(self, y, raw):
        return self.objective_grad_hess(y, raw)[0]

    def scale_terms(self, y, raw):
        """``(dl/dsigma, d2l/df dsigma, d2l/dsigma2)`` per row, each (n,)."""
        r, inlier = self._residual(y, raw)
        r, inlier = r[:, 0], inlier[:, 0]
        sig, eps = self.sigma, self.epsilon
        u = r / sig
        q = np.where(inlier, 1.0 - u**2, 1.0 - eps**2)
        fs = np.where(inlier, 2.0 * u / sig, 0.0)
        ss = np.where(inlier, 2.0 * u**2 / sig, 0.0)
        return q, fs, ss


class HuberAdapter(GLMAdapter):
    """A GLM over (w, b) at the fitted scale, sigma the last parameter.

    ``theta`` (what the solvers see) is the GLM's; ``parameters()`` and
    ``read_theta()`` append sigma, the layout of ``theta_`` and of
    ``influence_on_params``.
    """

    #: The Newton estimate is not offered (see the module docstring).
    newton = False
    joint_scale = True

    @property
    def sigma(self):
        return self.loss.sigma

    def parameters(self):
        return np.r_[self.theta, self.sigma]

    def read_theta(self):
        est = self.fitted_model()
        coef = np.ravel(np.asarray(est.coef_, dtype=np.float64))
        b = [float(est.intercept_)] if self.fit_intercept else []
        return np.r_[coef, b, float(est.scale_)]

    def scale_terms(self, y_enc, raw):
        return self.loss.scale_terms(y_enc, raw)

    def coupling(self, Z, y_enc, s, raw):
        """``c = sum_j s_j l_fs z_j`` (the Hessian's border) and
        ``sum_j s_j l_ss``, its corner."""
        _, fs, ss = self.scale_terms(y_enc, raw)
        return np.asarray(Z.T @ (s * fs)).ravel(), float(s @ ss)

    def with_parameters(self, params):
        """A copy at other ``(w, b, sigma)`` (``parameters()``'s layout)."""
        params = np.asarray(params, dtype=np.float64)
        new = self.with_theta(params[:-1])
        new.loss = HuberLoss(self.loss.epsilon, params[-1])
        return new

    def joint_objective(self, Z, y_enc, s):
        """J, its gradient and its dense Hessian in ``(w, b, sigma)``."""
        raw = self.raw_prediction(Z)
        g, h = self.pointwise_grad_hess(y_enc, raw)
        q, fs, ss = self.scale_terms(y_enc, raw)
        value = self.objective_value(Z, y_enc, s)
        grad = np.r_[self.objective_gradient(Z, y_enc, s), s @ q]
        p = self.n_params
        H = np.empty((p + 1, p + 1))
        H[:p, :p] = self.hessian(Z, s, h)
        H[:p, p] = H[p, :p] = np.asarray(Z.T @ (s * fs)).ravel()
        H[p, p] = s @ ss
        return value, grad, H

    def gradient_scale(self, Z, y_enc, s):
        """The size of the terms J's gradient sums (its rounding scale)."""
        raw = self.raw_prediction(Z)
        g = np.abs(s[:, None] * self.pointwise_grad_hess(y_enc, raw)[0])
        q = np.abs(s * self.scale_terms(y_enc, raw)[0])
        Za = abs(Z)
        return float(np.linalg.norm(np.r_[
            np.asarray(Za.T @ g).ravel() + np.abs(self.penalty * self.theta),
            q.sum()]))


def huber_adapter(est, y, sample_weight, n_train):
    coef = np.asarray(est.coef_, dtype=np.float64).reshape(1, -1)
    fit_intercept = bool(est.fit_intercept)
    intercept = (np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
                 if fit_intercept else None)
    return HuberAdapter(
        estimator=est,
        coef=coef,
        intercept=intercept,
        loss=HuberLoss(est.epsilon, est.scale_),
        scale=1.0,
        # alpha ||w||^2 = 1/2 w' (2 alpha) w; the intercept free.
        penalty=_penalty_vector(2.0 * est.alpha, coef.shape[1], fit_intercept),
        description=(f"HuberRegressor: Huber loss (epsilon={est.epsilon:g}) with "
                     f"its scale sigma={est.scale_:.4g} a parameter"),
    )
