"""Model adapters: the one place that says which models are supported."""

from ._glm import GLMAdapter, transformed_target
from ._huber import huber_adapter
from ._kernel import kernel_ridge_adapter
from ._linear import linear_adapter, ridge_classifier_adapter
from ._logistic import effective_logistic_penalty, logistic_adapter
from ._meta import one_vs_rest_adapter
from ._pipeline import split_pipeline, unwrap_search
from ._sparse import L1_REGRESSORS, l1_adapter_for_logistic, l1_regressor_adapter
from ._svm import svm_adapter, svr_adapter
from ._tweedie import GLM_REGRESSORS, tweedie_adapter

SUPPORTED = (
    "linear (LinearRegression, Ridge, RidgeCV, RidgeClassifier, RidgeClassifierCV, "
    "SGDRegressor(loss='squared_error'), KernelRidge), "
    "logistic (LogisticRegression and LogisticRegressionCV with an l2 penalty "
    "or none, or an l1 one on two classes, SGDClassifier(loss='log_loss')), "
    "l1 (Lasso, ElasticNet, LassoCV, ElasticNetCV, on their active set), "
    "smooth-hinge SVM (LinearSVC, SVC(kernel='linear') binary, "
    "SGDClassifier(loss='hinge'), LinearSVR, SVR(kernel='linear')) and "
    "scikit-learn's GLMs (PoissonRegressor, GammaRegressor, TweedieRegressor), "
    "HuberRegressor (its scale a parameter); "
    "and torch modules wrapped in skinfluence.torch.TorchModel, skorch nets, "
    "and scikit-learn's MLPClassifier and MLPRegressor (through a float64 "
    "torch replica; pip install skinfluence[torch]); fitted searches "
    "(GridSearchCV, ...), "
    "OneVsRestClassifier (of a binary one) and TransformedTargetRegressor of "
    "any of them"
)


def _unwrap(model):
    # FrozenEstimator keeps the fitted model in `.estimator`; a fitted search
    # its refitted one in `.best_estimator_`.
    if type(model).__name__ == "FrozenEstimator":
        return _unwrap(model.estimator)
    return unwrap_search(model)


def _base(model):
    """The model a meta-estimator's influence is that of, to check support:
    a TransformedTargetRegressor's regressor, a OneVsRestClassifier's binary
    model (fitted or not)."""
    name = type(model).__name__
    if name == "TransformedTargetRegressor":
        inner = getattr(model, "regressor_", model.regressor)
        if inner is None:
            from sklearn.linear_model import LinearRegression

            inner = LinearRegression()  # its default
        return _base(_unwrap(inner))
    if name == "OneVsRestClassifier":
        fitted = getattr(model, "estimators_", None)
        for inner in fitted or ():
            if type(inner).__name__ == "_ConstantPredictor":
                return inner  # refused by check_supported
        return _base(_unwrap(fitted[0] if fitted else model.estimator))
    return model


def _refuse(message):
    raise ValueError(message)


_TREES = ("trees and boosted ensembles are piecewise constant in their "
          "parameters: a training row moves them by re-splitting, which no "
          "gradient sees. For influence on such data, fit a LogisticRegression "
          "or a Ridge on the same features (or on the ensemble's leaf "
          "indicators), or a torch network wrapped in skinfluence.torch."
          "TorchModel")
#: Why models that stay unsupported are refused, and what to use instead.
UNSUPPORTED = {
    **dict.fromkeys(
        ("DecisionTreeClassifier", "DecisionTreeRegressor",
         "RandomForestClassifier", "RandomForestRegressor",
         "ExtraTreesClassifier", "ExtraTreesRegressor",
         "GradientBoostingClassifier", "GradientBoostingRegressor",
         "HistGradientBoostingClassifier", "HistGradientBoostingRegressor"),
        _TREES),
    "CalibratedClassifierCV": (
        "its predictions average calibrators fitted on cross-validation folds "
        "of other fits, not the minimum of one objective on all rows. Take "
        "the influence of the base model, or of a LogisticRegression, "
        "directly"),
    **dict.fromkeys(("BayesianRidge", "ARDRegression"), (
        "its regularisation is fitted jointly with the weights (evidence "
        "maximisation), so leaving a row out also moves the penalty, which "
        "the weights' Hessian does not capture. Use Ridge (or RidgeCV) with "
        "the alpha it found: Ridge(alpha=model.lambda_ / model.alpha_)")),
    "QuantileRegressor": (
        "the pinball loss is piecewise linear, so it has no second "
        "derivative and influence functions are undefined. Use Ridge for the "
        "conditional mean, or a torch model with a smooth quantile loss"),
}


def check_supported(model):
    """Refuse, before any fitting, what skinfluence cannot differentiate.

    Raises
    ------
    TypeError
        If the model is of an unsupported kind; the message names the
        supported families.
    ValueError
        If a supported kind is set up with a non-differentiable loss or
        penalty, or a multiclass scheme that is not supported.
    """
    model = _base(_unwrap(model))
    name = type(model).__name__
    if name == "_ConstantPredictor":
        raise ValueError(
            "OneVsRestClassifier saw a class on every row or on none (one class "
            "only, say) and fitted a constant for it, which has no "
            "parameters; fit it on data where every class is present and "
            "absent.")
    if name in UNSUPPORTED:
        raise TypeError(f"{name} is not supported by skinfluence: "
                        f"{UNSUPPORTED[name]}.")
    if name not in _KINDS:
        raise TypeError(
            f"{name} is not supported by skinfluence. Supported models: "
            f"{SUPPORTED}; or a Pipeline ending in one of them."
        )
    l1 = "l1 terms are not twice differentiable"
    if name in ("LinearRegression", "Ridge", "RidgeClassifier") and getattr(
            model, "positive", False):
        _refuse(f"{name}(positive=True) is a constrained fit whose optimum is not "
                "stationary; influence functions need an unconstrained model.")
    if name.startswith("SGD"):
        allowed = {"SGDRegressor": ("squared_error",),
                   "SGDClassifier": ("log_loss", "hinge")}[name]
        if model.loss not in allowed:
            _refuse(f"{name}(loss={model.loss!r}) is not supported; use loss="
                    + " or ".join(repr(a) for a in allowed) + ".")
        if model.penalty not in ("l2", None):
            _refuse(f"{name}(penalty={model.penalty!r}) is not supported: {l1}; "
                    "use penalty='l2' or None.")
    if name == "LinearSVC":
        if model.penalty != "l2":
            _refuse(f"LinearSVC(penalty={model.penalty!r}) is not supported: {l1}; "
                    "use penalty='l2'.")
        if model.multi_class != "ovr":
            _refuse("LinearSVC(multi_class='crammer_singer') is not supported; "
                    "use multi_class='ovr'.")
    if name in ("SVC", "SVR") and model.kernel != "linear":
        _refuse(f"{name}(kernel={model.kernel!r}) is not supported: its weights "
                "live in the kernel's feature space. Use kernel='linear', or "
                "KernelRidge, or a Pipeline of a kernel approximation "
                "(sklearn.kernel_approximation.Nystroem) and a linear model.")
    if name == "SVC" and hasattr(model, "classes_") and len(model.classes_) > 2:
        _refuse("SVC on more than two classes fits one-vs-one problems on "
                "pairs of classes, which is not supported; use LinearSVC "
                "(one-vs-rest) or OneVsRestClassifier(SVC(kernel='linear')).")
    return model


def get_adapter(model, *, y, sample_weight, n_train, t=0.1):
    """Build the adapter for a fitted supported model (checked first)."""
    model = _unwrap(model)
    name = type(model).__name__
    if name == "TransformedTargetRegressor":
        adapter = get_adapter(model.regressor_, y=transformed_target(model, y),
                              sample_weight=sample_weight, n_train=n_train, t=t)
        adapter.estimator = model  # reads regressor_ afresh (fitted_model)
        adapter.description += ", on the transformed target"
        return adapter
    if name == "OneVsRestClassifier":
        check_supported(model)
        return one_vs_rest_adapter(
            model, y, sample_weight, n_train,
            lambda est, y_bin: get_adapter(est, y=y_bin, sample_weight=sample_weight,
                                           n_train=n_train, t=t))
    model = check_supported(model)
    name = type(model).__name__
    if name in ("LogisticRegression", "LogisticRegressionCV") and (
            effective_logistic_penalty(model) in ("l1", "elasticnet")):
        return l1_adapter_for_logistic(model, y, sample_weight, n_train)
    if name == "SGDClassifier" and model.loss == "hinge" or name in ("LinearSVC",
                                                                      "SVC"):
        return svm_adapter(model, y, sample_weight, n_train, t)
    if name in ("LinearSVR", "SVR"):
        return svr_adapter(model, y, sample_weight, n_train, t)
    return _KINDS[name](model, y, sample_weight, n_train)


_KINDS = {
    "LinearRegression": linear_adapter,
    "Ridge": linear_adapter,
    "RidgeCV": linear_adapter,
    **dict.fromkeys(L1_REGRESSORS, l1_regressor_adapter),
    "RidgeClassifier": ridge_classifier_adapter,
    "KernelRidge": kernel_ridge_adapter,
    "RidgeClassifierCV": ridge_classifier_adapter,
    "SGDRegressor": linear_adapter,
    "LogisticRegression": logistic_adapter,
    "LogisticRegressionCV": logistic_adapter,
    "SGDClassifier": logistic_adapter,
    # svm_adapter and svr_adapter, which also take the temperature:
    **dict.fromkeys(("LinearSVC", "SVC", "LinearSVR", "SVR")),
    **dict.fromkeys(GLM_REGRESSORS, tweedie_adapter),
    "HuberRegressor": huber_adapter,
}


__all__ = ["GLMAdapter", "SUPPORTED", "check_supported", "get_adapter",
           "split_pipeline"]
