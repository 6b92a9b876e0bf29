"""Logistic models: LogisticRegression and SGDClassifier(loss="log_loss").

LogisticRegression minimises, whatever its solver (see the note in
scikit-learn's ``_logistic_regression_path``)::

    C * sum_j sw_j cw_{y_j} l(y_j, raw_j) + 1/2 ||w||^2

with the intercept unpenalised, except for liblinear, which appends a
synthetic feature of value ``intercept_scaling`` and penalises its weight
``b / intercept_scaling`` like any other: ``1/2 (b / intercept_scaling)^2``.
Binary problems use the logistic loss on one output, multiclass ones the
softmax over K outputs (every solver but liblinear).

SGDClassifier minimises ``1/n sum_j sw_j cw_{y_j} l + alpha/2 ||w||^2``, one
binary problem per class (one-vs-rest) when there are more than two.
"""

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from ._glm import GLMAdapter, MarginLoss, SoftmaxLoss
from ._linear import _penalty_vector
from ._weights import BalancedWeights


def logistic_C(est):
    """The C of LogisticRegression, or the ``C_`` LogisticRegressionCV chose."""
    if type(est).__name__ == "LogisticRegressionCV":
        return float(np.ravel(est.C_)[0])
    return est.C


def effective_logistic_penalty(est):
    """The penalty scikit-learn applies: "l2", "l1", "elasticnet" or None."""
    if type(est).__name__ == "LogisticRegressionCV":
        ratio = getattr(est, "l1_ratio_", None)
        ratio = None if ratio is None else np.ravel(ratio)[0]
        if ratio is None or (not isinstance(ratio, str) and (
                ratio is None or np.isnan(ratio) or ratio == 0)):
            penalty = getattr(est, "penalty", "deprecated")
            return "l2" if penalty in ("deprecated", "l2") else penalty
        return "l1" if ratio == 1 else "elasticnet"
    penalty = getattr(est, "penalty", "deprecated")
    if penalty == "deprecated":
        l1_ratio = getattr(est, "l1_ratio", 0.0)
        if l1_ratio is None or l1_ratio == 0:
            penalty = "l2"
        elif l1_ratio == 1:
            penalty = "l1"
        else:
            penalty = "elasticnet"
        if est.C == np.inf:
            penalty = None
    return penalty


def resolve_class_weight(est, y, sample_weight, *, use_sample_weight=True):
    """Per-class weight factors as scikit-learn computes them at fit.

    Returns ``(class_weight, balanced)``. ``balanced`` is None unless
    ``class_weight="balanced"``, whose factors depend on the training rows
    themselves: it then holds what leaving a row out changes, the total and
    per-class (weighted, where the estimator weights them) counts.
    """
    if est.class_weight is None:
        return None, None
    sw = sample_weight if use_sample_weight else None
    cw = compute_class_weight(est.class_weight, classes=est.classes_, y=y,
                              sample_weight=sw)
    balanced = None
    if isinstance(est.class_weight, str) and est.class_weight == "balanced":
        w = np.ones(len(y)) if sw is None else np.asarray(sw, dtype=np.float64)
        idx = np.searchsorted(est.classes_, y)
        balanced = BalancedWeights(
            counts=np.bincount(idx, weights=w, minlength=len(est.classes_)),
            weighted=use_sample_weight,
        )
    return np.asarray(cw, dtype=np.float64), balanced


def logistic_adapter(est, y, sample_weight, n_train):
    name = type(est).__name__
    classes = np.asarray(est.classes_)
    coef = np.asarray(est.coef_, dtype=np.float64)
    fit_intercept = bool(est.fit_intercept)
    intercept = (
        np.asarray(est.intercept_, dtype=np.float64).ravel() if fit_intercept else None
    )
    if name in ("LogisticRegression", "LogisticRegressionCV"):
        # LogisticRegressionCV: its final refit on all rows at C_ (the search
        # over Cs is held fixed); without refit its coef_ is an average of
        # the folds' fits, the minimum of no objective.
        if name == "LogisticRegressionCV" and not est.refit:
            raise ValueError(
                "LogisticRegressionCV(refit=False) averages the folds' "
                "coefficients, which minimise no objective; fit it with "
                "refit=True.")
        penalty = effective_logistic_penalty(est)
        strength = 1.0 if penalty == "l2" else 0.0
        scale = logistic_C(est) if penalty == "l2" else 1.0
        intercept_strength = 0.0
        if est.solver == "liblinear" and fit_intercept:
            intercept_strength = 1.0 / est.intercept_scaling**2
        loss = MarginLoss("log_loss") if len(classes) == 2 else SoftmaxLoss()
        cw, balanced = resolve_class_weight(est, y, sample_weight)
        desc = f"{name} ({'binary' if len(classes) == 2 else 'softmax'})"
    else:  # SGDClassifier(loss="log_loss")
        strength, scale, intercept_strength, cw, balanced = _sgd_settings(
            est, y, n_train)
        loss = MarginLoss("log_loss")
        desc = "SGDClassifier: log-loss" + (" one-vs-rest" if len(classes) > 2 else "")
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
        description=desc,
    )


def _sgd_settings(est, y, n_train):
    """Penalty strength, row scale, intercept penalty and class weights of SGD."""
    cw, balanced = resolve_class_weight(est, y, None, use_sample_weight=False)
    if cw is not None and len(est.classes_) > 2:
        raise ValueError(
            "SGDClassifier with class_weight on more than two classes weights "
            "each one-vs-rest problem differently; this is not supported."
        )
    strength = est.alpha if est.penalty == "l2" else 0.0
    return strength, 1.0 / n_train, 0.0, cw, balanced
