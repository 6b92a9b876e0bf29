"""Meta-estimators unwrapped: OneVsRestClassifier, TransformedTargetRegressor.

- ``OneVsRestClassifier`` over a supported binary model fits K independent
  binary problems, class k against the rest, on every row. Their sum is one
  objective with K outputs, ``sum_j s_j sum_k l(m_jk) + 1/2 theta' Lambda
  theta`` (margins ``m_jk = +-raw_jk``), whose Hessian is block diagonal:
  the GLM algebra of LinearSVC's one-vs-rest, with the test loss the sum of
  the K binary losses.
- ``TransformedTargetRegressor`` is its ``regressor_`` fitted on the
  transformed target ``transformer_.transform(y)``: influence is that of
  the regressor, and the loss is measured in the transformed space (the
  squared error of ``log1p(y)``, say), not in the units of ``predict``.
"""

import copy

import numpy as np

from ._glm import GLMAdapter, MarginLoss


class OneVsRestAdapter(GLMAdapter):
    """K binary adapters as one GLM with K outputs (see the module docstring)."""

    def __init__(self, ovr, parts):
        first = parts[0]
        self.parts = parts
        intercept = None if first.intercept is None else np.concatenate(
            [a.intercept for a in parts])
        super().__init__(
            estimator=ovr,
            coef=np.vstack([a.coef for a in parts]),
            intercept=intercept,
            loss=first.loss,
            scale=first.scale,
            penalty=np.concatenate([a.penalty for a in parts]),
            classes=np.asarray(ovr.classes_),
            class_weight=first.class_weight if len(parts) == 1 else None,
            reweighting=first.reweighting if len(parts) == 1 else None,
            smooth=first.smooth,
            description=f"OneVsRestClassifier of {len(parts)} x {first.description}",
        )

    def read_theta(self):
        fitted = self.estimator.estimators_
        if len(fitted) != len(self.parts):
            return np.zeros(0)  # refitted on other classes: differs
        views = []
        for part, est in zip(self.parts, fitted):
            view = copy.copy(part)
            view.estimator = est
            views.append(view.read_theta().reshape(1, -1))
        return np.vstack(views).ravel()


def one_vs_rest_adapter(ovr, y, sample_weight, n_train, part_adapter):
    """The OneVsRestAdapter of a fitted OneVsRestClassifier.

    ``part_adapter(model, y)`` builds a binary model's adapter.
    """
    classes = np.asarray(ovr.classes_)
    fitted = ovr.estimators_
    positives = [classes[1]] if len(classes) == 2 else list(classes)
    parts = []
    for est, positive in zip(fitted, positives):
        name = type(est).__name__  # no constant one: check_supported refused it
        part = part_adapter(est, (np.asarray(y) == positive).astype(int))
        if len(classes) > 2 and (part.class_weight is not None
                                 or part.reweighting is not None):
            raise ValueError(
                "OneVsRestClassifier over a model with class_weight weights "
                "each binary problem differently, which one objective cannot "
                "hold; drop class_weight or use a multinomial model.")
        if not isinstance(part.loss, MarginLoss) or type(part) is not GLMAdapter:
            raise ValueError(
                f"OneVsRestClassifier over {name} ({part.description}) is not "
                "supported: its binary problems must be GLMs on the same "
                "features with a margin loss (logistic, hinge, squared).")
        parts.append(part)
    scales = {a.scale for a in parts}
    if len(scales) > 1:  # pragma: no cover - clones share their settings
        raise ValueError("OneVsRestClassifier's estimators have different C.")
    return OneVsRestAdapter(ovr, parts)
