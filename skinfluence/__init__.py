"""skinfluence: influence functions for scikit-learn models.

"Which training rows made my model say this?"  :class:`InfluenceEstimator`
wraps a fitted linear, logistic or linear-SVM model (or a Pipeline ending in
one) and estimates, without retraining, how each training row moves the loss
or the output on any row (Koh & Liang, ICML 2017).
"""

from ._estimator import InfluenceEstimator

__version__ = "0.1.0"

__all__ = ["InfluenceEstimator", "__version__"]
