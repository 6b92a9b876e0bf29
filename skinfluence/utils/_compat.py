"""The one importer of private scikit-learn names.

They are the tools scikit-learn's own meta-estimators use (parameter
validation, chunk sizing, weight checks) and have been stable across
releases; if one moves, only this module changes.
"""

from sklearn.base import _fit_context
from sklearn.utils._chunking import get_chunk_n_rows
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import _check_sample_weight

__all__ = [
    "HasMethods",
    "Interval",
    "StrOptions",
    "_check_sample_weight",
    "_fit_context",
    "get_chunk_n_rows",
    "validate_parameter_constraints",
]
