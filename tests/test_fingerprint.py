"""A Pipeline's feature steps changed after InfluenceEstimator.fit are refused."""

import pickle
import threading

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    PolynomialFeatures,
    StandardScaler,
)

from skinfluence import InfluenceEstimator

CHANGED = r"feature steps changed since InfluenceEstimator\.fit.*call fit again"


def _data():
    X, y = make_classification(80, 4, random_state=0)
    return 3 * X + 1, y


def _fitted(*steps):
    X, y = _data()
    pipe = make_pipeline(*steps, LogisticRegression()).fit(X, y)
    return pipe, InfluenceEstimator(pipe).fit(X, y), X, y


CALLS = {
    "score_influence": lambda inf, X, y: inf.score_influence(X[:5], y[:5]),
    "transform": lambda inf, X, y: inf.transform(X[:5]),
    "self_influence": lambda inf, X, y: inf.self_influence(),
    "self_influence(X, y)": lambda inf, X, y: inf.self_influence(X[:5], y[:5]),
    "influence_on_params": lambda inf, X, y: inf.influence_on_params(X[:5], y[:5]),
}


@pytest.mark.parametrize("call", CALLS)
def test_refitted_scaler_is_refused(call):
    pipe, inf, X, y = _fitted(StandardScaler(), PolynomialFeatures(2))
    before = CALLS[call](inf, X, y)
    pipe[0].fit(2 * X - 5)  # the scaler refitted on other data
    with pytest.raises(ValueError, match=CHANGED):
        CALLS[call](inf, X, y)
    pipe[0].fit(X)  # refitted as it was: the numbers are those of fit again
    np.testing.assert_array_equal(CALLS[call](inf, X, y), before)


@pytest.mark.parametrize("change", [
    "set_params", "replaced step", "nested refit", "column transformer refit"])
def test_other_changes_of_feature_steps_are_refused(change):
    columns = ColumnTransformer([("scale", StandardScaler(), [0, 1])],
                                remainder="passthrough")
    pipe, inf, X, y = _fitted(columns)
    if change == "set_params":  # changes transform without a refit
        pipe[0].named_transformers_["scale"].set_params(with_mean=False)
    elif change == "replaced step":
        pipe.steps[0] = (pipe.steps[0][0], ColumnTransformer(
            [("scale", StandardScaler(), [0, 1])], remainder="passthrough",
        ).fit(2 * X - 5))
    elif change == "nested refit":
        pipe[0].named_transformers_["scale"].fit(2 * X[:, :2] - 5)
    else:
        pipe[0].fit(2 * X - 5)
    with pytest.raises(ValueError, match=CHANGED):
        inf.score_influence(X[:5], y[:5])


@pytest.mark.parametrize("steps, text, picklable", [
    ([StandardScaler()], False, True),
    ([FunctionTransformer(lambda Z: Z / 3)], False, False),  # pickle refuses it
    # CountVectorizer caches id(stop_words), which a pickled copy changes.
    ([TfidfVectorizer(stop_words=["w1"])], True, True),
], ids=["scaler", "lambda", "text"])
def test_unchanged_pipelines_keep_working(steps, text, picklable):
    X, y = _data()
    if text:
        X = [" ".join(f"w{i}" for i in row) for row in
             np.random.default_rng(0).integers(0, 30, size=(80, 6))]
    pipe = make_pipeline(*steps, LogisticRegression()).fit(X, y)
    for model in (pipe, FrozenEstimator(pipe)):
        inf = InfluenceEstimator(model).fit(X, y)
        first = inf.score_influence(X[:5], y[:5])
        inf.predict(X)  # runs the feature steps in between
        for _ in range(2):
            np.testing.assert_array_equal(inf.score_influence(X[:5], y[:5]), first)
            inf.transform(X[:5])
        if picklable:
            copy = pickle.loads(pickle.dumps(inf))
            for _ in range(2):
                np.testing.assert_allclose(copy.score_influence(X[:5], y[:5]), first)


class _Locked(StandardScaler):
    """A scaler holding a lock: pickle refuses it."""

    def fit(self, X, y=None):
        self.lock_ = threading.Lock()
        return super().fit(X, y)


def test_unpicklable_steps_warn_and_work():
    X, y = _data()
    pipe = make_pipeline(_Locked(), LogisticRegression()).fit(X, y)
    with pytest.warns(UserWarning, match="cannot be pickled.*undetected"):
        inf = InfluenceEstimator(pipe).fit(X, y)
    assert inf.score_influence(X[:5], y[:5]).shape == (5, len(y))


def test_plain_model_is_unaffected():
    X, y = _data()
    model = LogisticRegression().fit(X, y)
    inf = InfluenceEstimator(FrozenEstimator(model)).fit(X, y)
    first = inf.score_influence(X[:5], y[:5])
    np.testing.assert_array_equal(inf.score_influence(X[:5], y[:5]), first)
    model.fit(2 * X - 5, y)  # a refit in place: theta has moved
    with pytest.raises(ValueError, match="parameters changed since"):
        inf.score_influence(X[:5], y[:5])
