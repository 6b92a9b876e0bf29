"""Pipelines: a fixed feature map followed by a supported model."""

from sklearn.pipeline import Pipeline

SEARCHES = ("GridSearchCV", "RandomizedSearchCV", "HalvingGridSearchCV",
            "HalvingRandomSearchCV")


def unwrap_search(estimator):
    """A hyperparameter search's refitted model (``best_estimator_``).

    The search itself is held fixed: influence is that of the training rows
    on the model it refitted with the chosen hyperparameters. An unfitted
    search stands for its ``estimator`` (to check support before fitting).
    """
    if type(estimator).__name__ not in SEARCHES:
        return estimator
    if not estimator.refit:
        raise ValueError(
            f"{type(estimator).__name__}(refit=False) keeps no refitted model; "
            "fit it with refit=True, or pass the model refitted at "
            "best_params_."
        )
    return getattr(estimator, "best_estimator_", estimator.estimator)


def split_pipeline(estimator):
    """Return ``(feature_map, model)``; ``feature_map`` is None for a bare model.

    Earlier steps are treated as fixed: influence is taken with respect to the
    last step's parameters, as if the model had been trained on the
    transformed features. A fitted hyperparameter search stands for its
    ``best_estimator_``.
    """
    estimator = unwrap_search(estimator)
    if isinstance(estimator, Pipeline):
        head = estimator[:-1]
        last = estimator[-1]
        if isinstance(last, Pipeline):
            inner_head, model = split_pipeline(last)
            return (Pipeline([("head", head), ("inner", inner_head)])
                    if inner_head is not None else head), model
        return (head if len(head) else None), last
    return None, estimator
