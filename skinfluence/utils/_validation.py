"""Checks of the features the last step of a model sees."""

import numpy as np
from sklearn.utils import check_array


def check_features(Xt, n_features, *, name="the model"):
    """2-D, finite, numeric, with the feature count the model was fitted on."""
    Xt = check_array(
        Xt,
        accept_sparse=("csr", "csc"),
        dtype=np.float64,
        ensure_all_finite=True,
        input_name="X",
    )
    if n_features is not None and Xt.shape[1] != n_features:
        raise ValueError(
            f"X has {Xt.shape[1]} features, but {name} is expecting "
            f"{n_features} features as input."
        )
    return Xt
