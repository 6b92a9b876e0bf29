"""Pipelines: a fixed feature map followed by a supported model."""

from sklearn.pipeline import Pipeline


def split_pipeline(estimator):
    """Return ``(feature_map, model)``; ``feature_map`` is None for a bare model.

    Earlier steps are treated as fixed: influence is taken with respect to the
    last step's parameters, as if the model had been trained on the
    transformed features.
    """
    if isinstance(estimator, Pipeline):
        head = estimator[:-1]
        last = estimator[-1]
        if isinstance(last, Pipeline):
            inner_head, model = split_pipeline(last)
            return (Pipeline([("head", head), ("inner", inner_head)])
                    if inner_head is not None else head), model
        return (head if len(head) else None), last
    return None, estimator
