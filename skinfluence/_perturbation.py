"""Perturbation influence: how a test loss moves when a training feature moves."""


def perturbation_influence(estimator, X, y, *, top_k=None):
    """Koh & Liang's I_pert,loss for every (test row, training row, feature)."""
    raise NotImplementedError("kind='perturbation' is being implemented.")
