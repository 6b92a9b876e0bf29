"""The interface every model family implements."""


class ModelAdapter:
    """Derivatives of one fitted model's training objective.

    An adapter is numpy-first and knows nothing about solvers or scoring.
    Subclasses provide ``theta``, ``n_params``, ``features(X)``,
    ``raw_prediction(Z)``, ``pointwise_grad_hess(y, raw)``,
    ``loss_from_raw(y, raw)`` (user units), ``objective_gradient``,
    ``hessian`` and ``hvp``.
    """

    family = None

    def null_space(self):
        """Orthonormal basis of parameter directions the objective cannot see."""
        return None
