"""What every Display shares: input checks, matplotlib's import, styles.

:class:`_InfluenceDisplayMixin` holds the one argument order of every
``from_estimator``, ``(influence_estimator, X_train, y_train, X_test,
y_test, ...)``, and the checks behind it, as scikit-learn's
``_BinaryClassifierCurveDisplayMixin`` does for its curve Displays.
"""

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

_COLORBAR_LABEL = "influence on the test loss (positive helps)"
_ESTIMATE_NAMES = {"influence": "first-order influence", "newton": "Newton step"}
# matplotlib's short names, so that a user's ``lw=2`` replaces a default
# ``linewidth``: keys of one group are one property.
_ALIASES = {
    "c": "color",
    "ls": "linestyle",
    "lw": "linewidth",
    "linewidths": "linewidth",
    "ec": "edgecolor",
    "edgecolors": "edgecolor",
    "fc": "facecolor",
    "facecolors": "facecolor",
}


# ------------------------------------------------------------------ helpers
def _check_matplotlib_support(caller_name):
    """Raise an ImportError naming the caller and the extra if matplotlib is
    missing (scikit-learn's ``check_matplotlib_support``, kept here so that
    no private scikit-learn name is imported outside ``utils/_compat.py``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"{caller_name} requires matplotlib. You can install it with "
            "`pip install matplotlib` or `pip install skinfluence[plot]`."
        ) from e


def _merge_style(defaults, user):
    """User keywords over defaults; a user alias (``lw``) drops its default."""
    user = {} if user is None else dict(user)
    given = {_ALIASES.get(key, key) for key in user}
    merged = {
        key: value
        for key, value in defaults.items()
        if _ALIASES.get(key, key) not in given
    }
    merged.update(user)
    return merged


def _finite_1d(values, name):
    """A finite float vector (a single row of shape (1, n) is accepted)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be one test row's influence, a vector of length "
            f"n_train; got an array of shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity.")
    return arr


def _check_k(k, n_train):
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1; got k={k!r}.")
    if k > n_train:
        raise ValueError(
            f"k={k} exceeds the number of training rows ({n_train}); "
            f"choose k <= {n_train}."
        )
    return int(k)


def _num_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _check_train_rows(influence_estimator, X_train):
    n_train = influence_estimator.n_train_
    if _num_rows(X_train) != n_train:
        raise ValueError(
            f"X_train has {_num_rows(X_train)} rows, but influence_estimator "
            f"was fitted on {n_train}; pass the data it was fitted on."
        )


def _feature_names(X):
    columns = getattr(X, "columns", None)
    return None if columns is None else [str(c) for c in columns]


def _dense_rows(X, indices=None):
    """Rows of X as a 2-D numpy array (sparse densified, pandas converted).

    A 1-D sequence of non-numbers (documents for a text Pipeline) is one
    column.
    """
    if sp.issparse(X):
        X = X.tocsr()
        return (X if indices is None else X[indices]).toarray()
    arr = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    return arr if indices is None else arr[np.asarray(indices, dtype=np.intp)]


def _one_row(X, name):
    """``(X as a 1-row batch for the estimator, the row as a 1-D vector)``."""
    if sp.issparse(X):
        batch, row = X, X.toarray()
    else:
        raw = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
        if raw.ndim == 1 and raw.dtype.kind in "OUS":  # [one document]
            batch, row = X, raw.reshape(-1, 1)
        elif raw.ndim == 1:
            batch, row = raw.reshape(1, -1), raw.reshape(1, -1)
        else:
            batch, row = X, raw
    if row.ndim != 2 or row.shape[0] != 1:
        raise ValueError(
            f"{name} must be a single test row (1-D, or 2-D with one row); "
            f"got an array of shape {np.shape(row)}."
        )
    return batch, row[0]


def _one_label(y, name):
    if y is None:
        return None
    arr = np.asarray(y).ravel()
    if arr.size != 1:
        raise ValueError(f"{name} must hold a single label; got {arr.size}.")
    return arr[0]


def _pearson(a, b):
    da, db = a - a.mean(), b - b.mean()
    saa, sbb = da @ da, db @ db
    return float(da @ db / np.sqrt(saa * sbb)) if saa > 0 and sbb > 0 else np.nan


def _fmt(value):
    return f"{value:+.3g}"


def _label_text(label):
    if label is None:
        return ""
    if isinstance(label, (float, np.floating)):
        return f"{label:.3g}"
    return str(label)


def _feature_text(value, width=10):
    if isinstance(value, (Integral, np.integer)):
        return str(value)
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        text = str(value)
        return text if len(text) <= width else text[: width - 1] + "…"



class _InfluenceDisplayMixin:
    """The checks every Display's ``from_estimator`` starts with."""

    @classmethod
    def _validate_from_estimator(cls, influence_estimator, X_train, y_train,
                                 X_test, y_test, *, one_row=False):
        """Check the shared arguments; return the test rows as a batch.

        ``influence_estimator`` must be fitted on ``(X_train, y_train)``
        (its row count is checked); with ``one_row``, ``X_test`` is one test
        row (1-D, or 2-D with one row) and ``y_test`` its label. Returns
        ``(X_batch, y_batch)`` ready for ``score_influence``.
        """
        _check_matplotlib_support(f"{cls.__name__}.from_estimator")
        check_is_fitted(influence_estimator, "n_train_")
        _check_train_rows(influence_estimator, X_train)
        if y_train is not None and _num_rows(y_train) != _num_rows(X_train):
            raise ValueError(
                f"y_train has {_num_rows(y_train)} entries but X_train has "
                f"{_num_rows(X_train)} rows."
            )
        if not one_row:
            return X_test, y_test
        batch, _ = _one_row(X_test, "X_test")
        y_batch = np.asarray(y_test).reshape(-1)
        _one_label(y_batch, "y_test")
        return batch, y_batch
