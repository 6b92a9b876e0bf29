"""Checks of what InfluenceEstimator is given: features, targets, fitted steps."""

import hashlib
import pickle
import types
from numbers import Number

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_array
from sklearn.utils.validation import column_or_1d


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


def check_targets(y, n_samples=None, *, classifier, multi_output=False):
    """Targets y as a classifier or a regressor takes them, one per row of X.

    A column ``(n_samples, 1)`` is raveled with a DataConversionWarning, as
    scikit-learn's ``fit`` does, unless ``multi_output`` (then any shape of
    ``n_samples`` rows is kept). A regressor's targets are returned as floats.
    """
    y = np.asarray(y)
    if not multi_output and y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if y.ndim == 0 or (y.ndim > 1 and not multi_output):
        if multi_output:
            expected = "an array with one row per row of X"
        elif classifier:
            expected = "of shape (n_samples,), one label per row, for a classifier"
        else:
            expected = ("of shape (n_samples,) for a single-output regressor "
                        "(multi-output regression is not supported)")
        raise ValueError(f"y must be {expected}; got shape {y.shape}.")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(
            f"X has {n_samples} rows but y has {y.shape[0]}; they must match."
        )
    if classifier:
        _check_label_types(y)
        return y
    try:
        return y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y must be numeric for a regressor; {exc}.") from exc


def _is_string_labels(labels):
    return labels.dtype.kind in "US" or (
        labels.dtype == object and all(isinstance(v, str) for v in labels.flat))


def _check_label_types(y):
    """Refuse object labels that mix strings and numbers (or other objects)."""
    if y.dtype != object:
        return
    types_ = {type(v) for v in y.flat}
    if all(issubclass(t, str) for t in types_) or all(
            issubclass(t, (Number, np.bool_)) for t in types_):
        return
    names = sorted(t.__qualname__ for t in types_)
    raise ValueError(
        f"y has labels of {'mixed types' if len(names) > 1 else 'type'} {names}; "
        "a classifier's labels must be all strings or all numbers."
    )


def encode_labels(y, classes):
    """Indices of the labels y in the sorted ``classes``, refusing others."""
    _check_label_types(y)
    y = np.asarray(y)
    if y.size and _is_string_labels(y) != _is_string_labels(classes):
        idx, bad = None, np.ones(y.shape, dtype=bool)  # no string equals a number
    else:
        idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        bad = classes[idx] != y
    if np.any(bad):
        raise ValueError(
            f"y contains labels the model never saw: {np.unique(y[bad])[:5].tolist()}"
            f"; the model's classes_ are {classes.tolist()}."
        )
    return idx


# Caches of id(), which the first transform after unpickling resets.
_VOLATILE = frozenset({"_stop_words_id"})


def _digest(data):
    return hashlib.sha1(data, usedforsecurity=False).digest()


class _StatePickler(pickle.Pickler):
    """Pickles estimators as their attributes, arrays as digests of their data
    (whatever their flags or subclass: a read-only memmap is an array), and by
    name the functions pickle cannot name."""

    def reducer_override(self, obj):
        if isinstance(obj, BaseEstimator) and hasattr(obj, "__dict__"):
            state = {k: v for k, v in vars(obj).items() if k not in _VOLATILE}
            return type(obj), (), state
        if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
            fortran = obj.flags.f_contiguous and not obj.flags.c_contiguous
            data = obj.T if fortran else np.ascontiguousarray(obj)
            return np.ndarray, (obj.shape, obj.dtype, fortran,
                                _digest(data.reshape(-1).view(np.uint8)))
        if isinstance(obj, (type, types.FunctionType)) and "<" in obj.__qualname__:
            # lambdas and local definitions, by name
            return getattr, (obj.__module__, obj.__qualname__)
        return NotImplemented


class _HashWriter:
    def __init__(self):
        self.hash = hashlib.sha1(usedforsecurity=False)

    def write(self, data):
        self.hash.update(data)


def fingerprint(obj):
    """Digest of obj's whole state (parameters, fitted attributes, nested steps).

    The C pickler walks it and arrays are hashed in place: about 2 ms for a
    TfidfVectorizer of 20,000 terms (``joblib.hash``, which sorts dicts in
    Python: 0.15 s), 1.2 ms per MB of arrays. None if obj cannot be pickled.
    """
    out = _HashWriter()
    pickler = _StatePickler(out, protocol=5)
    pickler.fast = True  # no memo: equal states, not shared objects, hash equal
    try:
        pickler.dump(obj)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError):
        return None
    return out.hash.hexdigest()
