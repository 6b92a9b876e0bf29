"""Linear support vector machines: LinearSVC, SVC(kernel="linear"),
SGDClassifier(loss="hinge"); LinearSVR and SVR(kernel="linear").

LinearSVC (liblinear) minimises, for each one-vs-rest problem::

    C * sum_j sw_j cw_{y_j} l(m_j) + 1/2 ||w||^2 + 1/2 (b / intercept_scaling)^2

with the margin ``m_j = y_j raw_j``.  ``loss="squared_hinge"`` (the default)
is once differentiable with a piecewise-constant second derivative, which is
the generalised Hessian liblinear itself uses: it is taken as is.
``loss="hinge"`` is not differentiable at the margin, so its derivatives are
those of the smooth hinge ``t log(1 + exp((1 - m)/t))`` (Koh & Liang 2017,
sec. 4.2), whose temperature ``t`` is InfluenceEstimator's ``t``.

SGDClassifier(loss="hinge") minimises ``1/n sum_j sw_j cw_{y_j} hinge(m_j) +
alpha/2 ||w||^2`` and is smoothed the same way. SVC(kernel="linear")
(libsvm, binary) minimises ``C sum_j sw_j cw_{y_j} hinge(m_j) + 1/2 ||w||^2``
with the intercept free; its "balanced" class weights count rows.

The regressors minimise ``C sum_j sw_j l(y_j - raw_j) + 1/2 ||w||^2`` with
the epsilon-insensitive loss ``l(r) = max(0, |r| - epsilon)``: LinearSVR
(liblinear) with the intercept penalised as LinearSVC's, and optionally
squared (``loss="squared_epsilon_insensitive"``, taken as is); SVR
(libsvm) with it free. The non-squared loss is smoothed by two smooth
hinges of temperature ``t``, one per side of the tube.
"""

import numpy as np

from ._glm import EpsilonInsensitiveLoss, GLMAdapter, MarginLoss
from ._linear import _penalty_vector
from ._logistic import _sgd_settings, resolve_class_weight


def svm_adapter(est, y, sample_weight, n_train, t):
    name = type(est).__name__
    classes = np.asarray(est.classes_)
    coef = _dense(est.coef_)
    fit_intercept = bool(getattr(est, "fit_intercept", True))  # SVC: always
    intercept = (
        np.asarray(est.intercept_, dtype=np.float64).ravel() if fit_intercept else None
    )
    if name == "LinearSVC":
        cw, balanced = resolve_class_weight(est, y, sample_weight)
        if cw is not None and len(classes) > 2:
            raise ValueError(
                "LinearSVC with class_weight on more than two classes weights "
                "each one-vs-rest problem differently; this is not supported."
            )
        strength, scale = 1.0, est.C
        intercept_strength = 1.0 / est.intercept_scaling**2 if fit_intercept else 0.0
        hinge = est.loss
    elif name == "SVC":  # kernel="linear", binary: libsvm, the intercept free
        cw, balanced = resolve_class_weight(est, y, None, use_sample_weight=False)
        strength, scale, intercept_strength, hinge = 1.0, est.C, 0.0, "hinge"
    else:  # SGDClassifier(loss="hinge")
        strength, scale, intercept_strength, cw, balanced = _sgd_settings(
            est, y, n_train)
        hinge = "hinge"
    if hinge == "squared_hinge":
        loss, smooth = MarginLoss("squared_hinge"), True
    else:
        loss, smooth = MarginLoss("smooth_hinge", t=t), False
    return GLMAdapter(
        estimator=est,
        coef=coef,
        intercept=intercept,
        loss=loss,
        scale=scale,
        penalty=np.tile(
            _penalty_vector(strength, coef.shape[1], fit_intercept, intercept_strength),
            coef.shape[0],
        ),
        classes=classes,
        class_weight=cw,
        reweighting=balanced,
        smooth=smooth,
        description=f"{name}: {loss.name}",
    )


def _dense(coef):
    """libsvm's coef_ is sparse after a fit on sparse X."""
    return np.asarray(coef.toarray() if hasattr(coef, "toarray") else coef,
                      dtype=np.float64)


def svr_adapter(est, y, sample_weight, n_train, t):
    name = type(est).__name__
    coef = _dense(est.coef_).reshape(1, -1)  # one target
    fit_intercept = bool(getattr(est, "fit_intercept", True))  # SVR: always
    intercept = np.asarray(est.intercept_, dtype=np.float64).ravel()[:1]
    intercept_strength = 0.0
    kind = "smooth"
    if name == "LinearSVR":
        if fit_intercept:
            intercept_strength = 1.0 / est.intercept_scaling**2
        if est.loss == "squared_epsilon_insensitive":
            kind = "squared"
    loss = EpsilonInsensitiveLoss(est.epsilon, kind, t=t)
    return GLMAdapter(
        estimator=est,
        coef=coef,
        intercept=intercept if fit_intercept else None,
        loss=loss,
        scale=est.C,
        penalty=_penalty_vector(1.0, coef.shape[1], fit_intercept, intercept_strength),
        smooth=kind == "squared",
        description=f"{name}: {loss.name}",
    )
