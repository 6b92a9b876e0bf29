"""scikit-learn's GLMs: PoissonRegressor, GammaRegressor, TweedieRegressor.

Their objective, read off ``_GeneralizedLinearRegressor.fit`` (every
solver)::

    sum_j (sw_j / W) l(y_j, raw_j) + alpha/2 ||w||^2,    W = sum_j sw_j

with ``l`` the half deviance of the model's Tweedie power (Poisson 1,
Gamma 2) and link (log, or identity for TweedieRegressor where asked, or by
``link="auto"`` at ``power <= 0``), and the intercept unpenalised. It is a
mean over the sample weights: leaving a row out re-normalises every other
row's factor (:class:`~skinfluence.models._weights.MeanWeights`).
"""

import numpy as np

from ._glm import GLMAdapter, SquaredLoss, TweedieLoss
from ._linear import _coef_1d, _intercept, _penalty_vector
from ._weights import MeanWeights

GLM_REGRESSORS = ("PoissonRegressor", "GammaRegressor", "TweedieRegressor")


def tweedie_power_link(est):
    """The Tweedie power and link a fitted (or unfitted) GLM regressor uses."""
    name = type(est).__name__
    if name == "PoissonRegressor":
        return 1.0, "log"
    if name == "GammaRegressor":
        return 2.0, "log"
    power = float(est.power)
    link = est.link
    if link == "auto":
        link = "identity" if power <= 0 else "log"
    return power, link


def tweedie_adapter(est, y, sample_weight, n_train):
    power, link = tweedie_power_link(est)
    coef = _coef_1d(est)
    fit_intercept = bool(est.fit_intercept)
    total = n_train if sample_weight is None else float(np.sum(sample_weight))
    # Normal with the identity link: least squares in mean form.
    loss = SquaredLoss() if (power == 0 and link == "identity") else TweedieLoss(
        power, link)
    return GLMAdapter(
        estimator=est,
        coef=coef,
        intercept=_intercept(est, fit_intercept),
        loss=loss,
        scale=1.0 / total,
        penalty=_penalty_vector(est.alpha, coef.shape[1], fit_intercept),
        reweighting=MeanWeights(total),
        description=(f"{type(est).__name__}: half {loss.name} deviance, mean over "
                     "the sample weights"),
    )
