import os

import numpy as np
import pytest
from hypothesis import settings
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.preprocessing import StandardScaler


def _split(X, y, n_test, seed=0):
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


@pytest.fixture(scope="session")
def cancer():
    """Breast cancer, standardised; 549 training rows, 20 test rows."""
    X, y = load_breast_cancer(return_X_y=True)
    return _split(StandardScaler().fit_transform(X), y, 20, seed=1)


@pytest.fixture(scope="session")
def diabetes():
    """Diabetes regression (already scaled by scikit-learn)."""
    X, y = load_diabetes(return_X_y=True)
    return _split(X, y, 20)


@pytest.fixture(scope="session")
def digits():
    """Ten-class digits, pixels scaled to [0, 1]."""
    X, y = load_digits(return_X_y=True)
    Xtr, ytr, Xte, yte = _split(X / 16.0, y, 10, seed=1)
    return Xtr[:1200], ytr[:1200], Xte, yte


@pytest.fixture(scope="session")
def digits17():
    """Handwritten 1s and 7s, pixels scaled to [0, 1]."""
    X, y = load_digits(return_X_y=True)
    keep = (y == 1) | (y == 7)
    return _split(X[keep] / 16.0, y[keep], 20, seed=1)


# CI replays the same hypothesis examples on every run (derandomize);
# elsewhere each run draws new ones, so that new failures keep surfacing.
if os.environ.get("CI"):
    settings.register_profile("ci", derandomize=True)
    settings.load_profile("ci")
