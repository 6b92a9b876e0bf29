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


#: The data sets :func:`load_flipped` (and ``python -m skinfluence``) offer.
FLIPPED_DATASETS = ("digits_1v7", "digits", "breast_cancer", "wine")


def load_flipped(name="digits_1v7", *, flip=0.1, test_size=0.3, random_state=0):
    """A bundled classification data set with a fraction of labels flipped.

    Parameters
    ----------
    name : {"digits_1v7", "digits", "breast_cancer", "wine"}, default="digits_1v7"
        The data: handwritten 1s and 7s (binary, 8x8 images), all ten digits
        (8x8 images), breast cancer (binary, 30 measurements) or wine (three
        cultivars, 13 measurements), all from :mod:`sklearn.datasets`.
        Digits' pixels are scaled to [0, 1]; the measurements are raw (put a
        ``StandardScaler`` in front of the model).
    flip : float, default=0.1
        Fraction of training labels replaced by another class, drawn at
        random among the others.
    test_size : float, default=0.3
        Fraction of rows held out for testing (never flipped).
    random_state : int, RandomState instance or None, default=0
        Seed of the split and of the flips.

    Returns
    -------
    data : Bunch
        ``X_train, y_train, X_test, y_test``, ``flipped`` (bool, per training
        row), ``y_train_clean`` (the labels before flipping), and
        ``image_shape`` (``(8, 8)`` for the digits, None otherwise).

    Examples
    --------
    >>> from skinfluence.datasets import load_flipped
    >>> data = load_flipped("wine", flip=0.2)
    >>> data.X_train.shape, int(data.flipped.sum())
    ((125, 13), 25)
    """
    from sklearn.datasets import load_breast_cancer, load_wine

    if name not in FLIPPED_DATASETS:
        raise ValueError(f"name must be one of {FLIPPED_DATASETS}; got {name!r}.")
    if not 0.0 <= flip < 1.0:
        raise ValueError(f"flip must be in [0, 1); got {flip!r}.")
    if name == "digits_1v7":
        data = load_digits_1v7(flip=flip, test_size=test_size,
                               random_state=random_state)
        del data["images"]
        data.image_shape = (8, 8)
        return data
    rng = check_random_state(random_state)
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X, image_shape = X / 16.0, (8, 8)
    else:
        loader = load_breast_cancer if name == "breast_cancer" else load_wine
        X, y = loader(return_X_y=True)
        image_shape = None
    order = rng.permutation(len(y))
    n_test = int(round(test_size * len(y)))
    test, train = order[:n_test], order[n_test:]
    y_train_clean = y[train]
    flipped = np.zeros(len(train), dtype=bool)
    flipped[rng.choice(len(train), int(round(flip * len(train))), replace=False)] = True
    classes = np.unique(y)
    # Another class for each flipped row: a shift of 1 to K-1 places.
    shift = rng.randint(1, len(classes), size=len(train))
    codes = np.searchsorted(classes, y_train_clean)
    y_train = np.where(flipped, classes[(codes + shift) % len(classes)], y_train_clean)
    return Bunch(X_train=X[train], y_train=y_train, X_test=X[test], y_test=y[test],
                 flipped=flipped, y_train_clean=y_train_clean,
                 image_shape=image_shape)
