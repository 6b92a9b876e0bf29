"""Linear support vector machines: LinearSVC and SGDClassifier(loss="hinge").

LinearSVC (liblinear) minimises, for each one-vs-rest problem::

    C * sum_j sw_j cw_{y_j} l(m_j) + 1/2 ||w||^2 + 1/2 (b / intercept_scaling)^2

with the margin ``m_j = y_j raw_j``.  ``loss="squared_hinge"`` (the default)
is once differentiable with a piecewise-constant second derivative, which is
the generalised Hessian liblinear itself uses: it is taken as is.
``loss="hinge"`` is not differentiable at the margin, so its derivatives are
those of the smooth hinge ``t log(1 + exp((1 - m)/t))`` (Koh & Liang 2017,
sec. 4.2), whose temperature ``t`` is InfluenceEstimator's ``t``.

SGDClassifier(loss="hinge") minimises ``1/n sum_j sw_j cw_{y_j} hinge(m_j) +
alpha/2 ||w||^2`` and is smoothed the same way.
"""

import numpy as np

from ._glm import GLMAdapter, MarginLoss
from ._linear import _penalty_vector
from ._logistic import _sgd_settings, resolve_class_weight


def svm_adapter(est, y, sample_weight, n_train, t):
    name = type(est).__name__
    classes = np.asarray(est.classes_)
    coef = np.asarray(est.coef_, dtype=np.float64)
    fit_intercept = bool(est.fit_intercept)
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
