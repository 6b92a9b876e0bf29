"""Model adapters: the one place that says which models are supported."""

from ._glm import GLMAdapter
from ._linear import linear_adapter
from ._logistic import logistic_adapter
from ._pipeline import split_pipeline
from ._svm import svm_adapter

SUPPORTED = (
    "linear (LinearRegression, Ridge, SGDRegressor(loss='squared_error')), "
    "logistic (LogisticRegression with an l2 penalty or none, "
    "SGDClassifier(loss='log_loss')) and smooth-hinge SVM (LinearSVC, "
    "SGDClassifier(loss='hinge'))"
)


def _unwrap(model):
    # FrozenEstimator keeps the fitted model in `.estimator`.
    if type(model).__name__ == "FrozenEstimator":
        return model.estimator
    return model


def get_adapter(model, *, y, sample_weight, n_train, t=0.1):
    """Build the adapter for a fitted supported model.

    Raises
    ------
    TypeError
        If the model is of an unsupported kind; the message names the
        supported families.
    """
    model = _unwrap(model)
    name = type(model).__name__
    if name in ("LinearRegression", "Ridge", "SGDRegressor"):
        return linear_adapter(model, y, sample_weight, n_train)
    if name == "LogisticRegression":
        return logistic_adapter(model, y, sample_weight, n_train)
    if name == "SGDClassifier":
        if model.loss == "log_loss":
            return logistic_adapter(model, y, sample_weight, n_train)
        if model.loss == "hinge":
            return svm_adapter(model, y, sample_weight, n_train, t)
        raise ValueError(
            f"SGDClassifier(loss={model.loss!r}) is not supported; use "
            "loss='log_loss' or loss='hinge'."
        )
    if name == "LinearSVC":
        return svm_adapter(model, y, sample_weight, n_train, t)
    raise TypeError(
        f"{name} is not supported by skinfluence. Supported models: {SUPPORTED}; "
        "or a Pipeline ending in one of them."
    )


__all__ = ["GLMAdapter", "SUPPORTED", "get_adapter", "split_pipeline"]
