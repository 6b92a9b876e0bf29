"""The bundled data sets with flipped labels."""

import numpy as np
import pytest

from skinfluence.datasets import FLIPPED_DATASETS, load_digits_1v7, load_flipped


@pytest.mark.parametrize("name", FLIPPED_DATASETS)
def test_flips_change_exactly_the_flipped_labels(name):
    data = load_flipped(name, flip=0.2, random_state=1)
    n = len(data.y_train)
    assert data.flipped.sum() == round(0.2 * n)
    np.testing.assert_array_equal(data.y_train != data.y_train_clean, data.flipped)
    # Flipped labels are other classes of the data, never new ones.
    assert set(np.unique(data.y_train)) <= set(np.unique(data.y_test))
    assert data.X_train.shape[0] == n and data.X_test.shape[1] == data.X_train.shape[1]
    again = load_flipped(name, flip=0.2, random_state=1)
    np.testing.assert_array_equal(again.y_train, data.y_train)
    other = load_flipped(name, flip=0.2, random_state=2)
    assert not np.array_equal(other.flipped, data.flipped)


def test_multiclass_flips_reach_every_other_class():
    data = load_flipped("digits", flip=0.3, random_state=0)
    pairs = {(a, b) for a, b in zip(data.y_train_clean[data.flipped],
                                    data.y_train[data.flipped])}
    assert len({b for a, b in pairs if a == 3}) == 9


def test_digits_1v7_is_load_digits_1v7():
    data, ref = load_flipped("digits_1v7", random_state=4), load_digits_1v7(
        random_state=4)
    np.testing.assert_array_equal(data.y_train, ref.y_train)
    assert data.image_shape == (8, 8)
    assert load_flipped("wine").image_shape is None


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "iris"}, "name must be one of"),
    ({"flip": 1.0}, r"flip must be in \[0, 1\)"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_flipped(**kwargs)
