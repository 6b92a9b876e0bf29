"""Least-squares models: LinearRegression, Ridge, SGDRegressor.

Objectives, read off scikit-learn's sources:

- LinearRegression: ``sum_j sw_j (y_j - raw_j)^2``;
- Ridge: ``sum_j sw_j (y_j - raw_j)^2 + alpha ||w||^2`` (intercept free);
  RidgeCV the same at its ``alpha_`` (its final fit on all rows);
- SGDRegressor(loss="squared_error"): ``1/n sum_j sw_j 1/2 (y_j - raw_j)^2 +
  alpha/2 ||w||^2`` (penalty "l2"; intercept free).

All are written here as ``sum_j s_j 1/2 r_j^2 + 1/2 theta' Lambda theta``.
"""

import numpy as np

from ._glm import GLMAdapter, SquaredLoss


def _coef_1d(est):
    coef = np.asarray(est.coef_, dtype=np.float64)
    if coef.ndim == 2 and coef.shape[0] != 1:
        raise ValueError(
            f"{type(est).__name__} was fitted on {coef.shape[0]} targets; "
            "skinfluence supports single-target regression."
        )
    return coef.reshape(1, -1)


def _intercept(est, fit_intercept):
    if not fit_intercept:
        return None
    return np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64)).ravel()[:1]


def _penalty_vector(strength, n_features, fit_intercept, intercept_strength=0.0):
    pen = np.full(n_features + int(fit_intercept), float(strength))
    if fit_intercept:
        pen[-1] = intercept_strength
    return pen


def linear_adapter(est, y, sample_weight, n_train):
    name = type(est).__name__
    coef = _coef_1d(est)
    fit_intercept = bool(est.fit_intercept)
    if name == "LinearRegression":
        alpha, scale = 0.0, 1.0
    elif name in ("Ridge", "RidgeCV"):
        # RidgeCV: the Ridge it refits on all rows at the alpha it chose
        # (the search over alphas is held fixed).
        alpha = np.asarray(est.alpha if name == "Ridge" else est.alpha_,
                           dtype=np.float64)
        if alpha.size != 1:
            raise ValueError(f"{name} with one alpha per target is not supported.")
        alpha, scale = float(alpha.ravel()[0]), 1.0
    else:  # SGDRegressor
        alpha = est.alpha if est.penalty == "l2" else 0.0
        # SGD minimises a mean: (1/n) sum sw l + alpha/2 ||w||^2.
        scale = 1.0 / n_train
    return GLMAdapter(
        estimator=est,
        coef=coef,
        intercept=_intercept(est, fit_intercept),
        loss=SquaredLoss(),
        scale=scale,
        penalty=_penalty_vector(alpha, coef.shape[1], fit_intercept),
        description=f"{name}: least squares",
    )
