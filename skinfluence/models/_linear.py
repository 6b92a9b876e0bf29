"""Least-squares models: LinearRegression, Ridge, SGDRegressor, RidgeClassifier.

Objectives, read off scikit-learn's sources:

- LinearRegression: ``sum_j sw_j (y_j - raw_j)^2``;
- Ridge: ``sum_j sw_j (y_j - raw_j)^2 + alpha ||w||^2`` (intercept free);
  RidgeCV the same at its ``alpha_`` (its final fit on all rows);
- SGDRegressor(loss="squared_error"): ``1/n sum_j sw_j 1/2 (y_j - raw_j)^2 +
  alpha/2 ||w||^2`` (penalty "l2"; intercept free).

All are written here as ``sum_j s_j 1/2 r_j^2 + 1/2 theta' Lambda theta``.

RidgeClassifier (and RidgeClassifierCV at its ``alpha_``) is Ridge on the
labels' +-1 codes (one output for two classes, one per class otherwise),
``sum_j sw_j cw_{y_j} sum_k (1 - m_jk)^2 + alpha ||W||^2`` with the margins
``m_jk = code_jk raw_jk``; its ``class_weight`` multiplies the sample
weights, "balanced" counting rows (``compute_sample_weight``).
"""

import numpy as np

from ._glm import GLMAdapter, MarginLoss, SquaredLoss


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


def ridge_classifier_adapter(est, y, sample_weight, n_train):
    from ._logistic import resolve_class_weight

    name = type(est).__name__
    alpha = np.asarray(est.alpha if name == "RidgeClassifier" else est.alpha_,
                       dtype=np.float64)
    if alpha.size != 1:
        raise ValueError(f"{name} with one alpha per class is not supported.")
    classes = np.asarray(est.classes_)
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))  # (1, p) binary
    fit_intercept = bool(est.fit_intercept)
    cw, balanced = resolve_class_weight(est, y, None, use_sample_weight=False)
    # J = sum s (1 - m)^2 + 1/2 theta' (2 alpha) theta: scikit-learn's own.
    return GLMAdapter(
        estimator=est,
        coef=coef,
        intercept=(np.asarray(est.intercept_, dtype=np.float64).ravel()
                   if fit_intercept else None),
        loss=MarginLoss("squared"),
        scale=1.0,
        penalty=np.tile(_penalty_vector(2.0 * float(alpha.ravel()[0]), coef.shape[1],
                                        fit_intercept), coef.shape[0]),
        classes=classes,
        class_weight=cw,
        reweighting=balanced,
        description=f"{name}: least squares on +-1 codes",
    )
