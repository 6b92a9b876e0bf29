"""Small bundled data for the demo, the docs and the tests (no download)."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import Bunch, check_random_state


def load_digits_1v7(*, flip=0.1, test_size=0.3, random_state=0):
    """Handwritten 1s and 7s from scikit-learn's digits, some labels flipped.

    Pixels are scaled to [0, 1]. A fraction ``flip`` of the training labels
    is flipped at random, the classic setting for finding mislabelled rows.

    Parameters
    ----------
    flip : float, default=0.1
        Fraction of training labels flipped.
    test_size : float, default=0.3
        Fraction of rows held out for testing (never flipped).
    random_state : int, RandomState instance or None, default=0
        Seed of the split and of the flips.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``X_train, y_train, X_test, y_test`` (labels 1 and 7), ``flipped``
        (boolean mask over training rows), ``y_train_clean`` and ``images``
        (8x8 training images).

    Examples
    --------
    >>> from skinfluence.datasets import load_digits_1v7
    >>> data = load_digits_1v7()
    >>> data.X_train.shape, int(data.flipped.sum())
    ((253, 64), 25)
    """
    rng = check_random_state(random_state)
    digits = load_digits()
    keep = np.isin(digits.target, (1, 7))
    X = digits.data[keep] / 16.0
    y = digits.target[keep]
    order = rng.permutation(len(y))
    n_test = int(round(test_size * len(y)))
    test, train = order[:n_test], order[n_test:]
    y_train_clean = y[train]
    flipped = np.zeros(len(train), dtype=bool)
    flipped[rng.choice(len(train), int(round(flip * len(train))), replace=False)] = True
    y_train = np.where(flipped, 8 - y_train_clean, y_train_clean)  # 1 <-> 7
    return Bunch(
        X_train=X[train],
        y_train=y_train,
        X_test=X[test],
        y_test=y[test],
        flipped=flipped,
        y_train_clean=y_train_clean,
        images=digits.images[keep][train],
    )
