"""l1-penalised models, on their active set: Lasso, ElasticNet (and their CV
variants at ``alpha_`` / ``l1_ratio_``), binary l1 LogisticRegression.

Their objectives, read off scikit-learn's sources::

    ElasticNet:  1/(2W) sum_j sw_j r_j^2 + alpha rho ||w||_1
                 + alpha (1 - rho)/2 ||w||^2,            W = sum_j sw_j
    (Lasso: rho = 1), intercept free;
    LogisticRegression:  C sum_j sw_j cw_j l_j + rho ||w||_1
                 + (1 - rho)/2 ||w||^2  (rho = l1_ratio; liblinear also
                 penalises b / intercept_scaling as a weight).

The l1 term is not differentiable at 0, so the coefficients at 0 (the
inactive set) sit at a kink, where a small change of the data leaves them
at 0. Influence is taken on the active set: the non-zero coefficients (and
the intercept) are the parameters, on which the l1 term is linear,
``rho alpha sign(w)' w``, and J twice differentiable. A removal that would
move a coefficient to or from 0 changes the support, which this does not
follow; the support is exposed as ``InfluenceEstimator.active_set_``.
"""

import numpy as np

from ._glm import GLMAdapter, MarginLoss, SquaredLoss, augment
from ._weights import MeanWeights

L1_REGRESSORS = ("Lasso", "ElasticNet", "LassoCV", "ElasticNetCV")


class ActiveSetAdapter(GLMAdapter):
    """GLMAdapter on the features of the non-zero coefficients only.

    Parameters
    ----------
    active : ndarray of int
        The features whose coefficients are not zero, in the model's order.
    n_features : int
        How many features the model has.
    **kwargs
        GLMAdapter's, with ``coef`` on the active features.
    """

    raw_features = False

    def __init__(self, *, active, n_features, **kwargs):
        self.active = active
        self.n_features = n_features
        super().__init__(**kwargs)

    def features(self, X):
        return augment(X[:, self.active], self.fit_intercept)

    def read_theta(self):
        est = self.fitted_model()
        coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
        inactive = np.setdiff1d(np.arange(coef.shape[1]), self.active)
        if coef.shape[1] != self.n_features or np.any(coef[:, inactive]):
            return coef.ravel()  # the support moved: not these parameters
        theta = coef[:, self.active]
        if self.intercept is None:
            return theta.ravel()
        b = np.ravel(est.intercept_)[:1].astype(float)
        return np.hstack([theta, b[:, None]]).ravel()


def _active(coef, name, fit_intercept):
    active = np.flatnonzero(coef)
    if active.size == 0 and not fit_intercept:
        raise ValueError(
            f"{name} has no non-zero coefficient and no intercept: it has no "
            "parameter that a training row moves (to first order). Lower "
            "alpha (or raise C) for a model with some support.")
    return active


def l1_regressor_adapter(est, y, sample_weight, n_train):
    name = type(est).__name__
    coef = np.asarray(est.coef_, dtype=np.float64)
    if coef.ndim != 1:
        raise ValueError(f"{name} fitted on several targets is not supported.")
    cv = name.endswith("CV")
    alpha = float(est.alpha_ if cv else est.alpha)
    rho = 1.0 if name.startswith("Lasso") else float(
        est.l1_ratio_ if cv else est.l1_ratio)
    fit_intercept = bool(est.fit_intercept)
    active = _active(coef, name, fit_intercept)
    total = n_train if sample_weight is None else float(np.sum(sample_weight))
    k = active.size
    penalty = np.r_[np.full(k, alpha * (1.0 - rho)), np.zeros(int(fit_intercept))]
    linear = np.r_[alpha * rho * np.sign(coef[active]), np.zeros(int(fit_intercept))]
    return ActiveSetAdapter(
        active=active,
        n_features=coef.size,
        estimator=est,
        coef=coef[active][None],
        intercept=np.atleast_1d(np.asarray(est.intercept_, float))[:1]
        if fit_intercept else None,
        loss=SquaredLoss(),
        scale=1.0 / total,
        penalty=penalty,
        reweighting=MeanWeights(total),
        linear=linear,
        description=f"{name}: least squares on its {k} active features",
    )


def l1_logistic_adapter(est, y, sample_weight, n_train, rho):
    """A binary LogisticRegression(CV) with an l1 or elastic-net penalty."""
    from ._logistic import logistic_C, resolve_class_weight

    name = type(est).__name__
    classes = np.asarray(est.classes_)
    if len(classes) != 2:
        raise ValueError(
            f"{name} with an l1 penalty on {len(classes)} classes keeps a "
            "different support per class, which is not supported; fit it on "
            "two classes, or use OneVsRestClassifier over a binary one.")
    coef = np.asarray(est.coef_, dtype=np.float64).reshape(1, -1)
    fit_intercept = bool(est.fit_intercept)
    active = _active(coef.ravel(), name, fit_intercept)
    intercept = np.asarray(est.intercept_, float).ravel() if fit_intercept else None
    k = active.size
    pen_b, lin_b = [], []
    if fit_intercept:
        if est.solver == "liblinear":  # b / intercept_scaling is a weight
            scaling = est.intercept_scaling
            pen_b = [(1.0 - rho) / scaling**2]
            lin_b = [rho * np.sign(intercept[0]) / scaling]
        else:
            pen_b, lin_b = [0.0], [0.0]
    cw, balanced = resolve_class_weight(est, y, sample_weight)
    return ActiveSetAdapter(
        active=active,
        n_features=coef.shape[1],
        estimator=est,
        coef=coef[:, active],
        intercept=intercept,
        loss=MarginLoss("log_loss"),
        scale=logistic_C(est),
        penalty=np.r_[np.full(k, 1.0 - rho), pen_b],
        classes=classes,
        class_weight=cw,
        reweighting=balanced,
        linear=np.r_[rho * np.sign(coef[0, active]), lin_b],
        description=f"{name} (binary, l1): log-loss on its {k} active features",
    )


def l1_adapter_for_logistic(est, y, sample_weight, n_train):
    """The active-set adapter of an l1 or elastic-net LogisticRegression(CV)."""
    from ._logistic import effective_logistic_penalty

    if effective_logistic_penalty(est) == "l1":
        rho = 1.0
    elif type(est).__name__ == "LogisticRegressionCV":
        rho = float(np.ravel(est.l1_ratio_)[0])
    else:
        rho = float(est.l1_ratio)
    return l1_logistic_adapter(est, y, sample_weight, n_train, rho)
