"""pandas in and out: the training rows' index, labelled results, feature
names for the perturbation kind; and the sparse perturbation property."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator

pd = pytest.importorskip("pandas")


def _frames():
    data = load_breast_cancer(as_frame=True)
    X = data.data.iloc[:, :6]
    X = (X - X.mean()) / X.std()
    y = data.target
    # An index that is neither positions nor integers.
    X.index = y.index = [f"patient-{i}" for i in range(len(y))]
    return X.iloc[:150], y.iloc[:150], X.iloc[150:160], y.iloc[150:160]


@pytest.fixture
def fitted():
    X, y, Xs, ys = _frames()
    model = LogisticRegression(C=1.0).fit(X, y)
    return InfluenceEstimator(model).fit(X, y), X, y, Xs, ys


def test_the_training_index_names_transforms_columns(fitted):
    inf, X, y, Xs, ys = fitted
    np.testing.assert_array_equal(inf.train_index_, X.index)
    np.testing.assert_array_equal(inf.get_feature_names_out(), X.index)
    out = inf.set_output(transform="pandas").transform(Xs)
    assert list(out.columns) == list(X.index)
    assert list(out.index) == list(Xs.index)
    np.testing.assert_allclose(out.to_numpy(), inf.set_output(
        transform="default").transform(Xs))
    # Refitted on arrays, the names are positional again.
    inf.fit(X.to_numpy(), y.to_numpy())
    assert not hasattr(inf, "train_index_")
    assert inf.get_feature_names_out()[0] == "influenceestimator0"


def test_scores_and_self_influence_as_labelled_frames(fitted):
    inf, X, y, Xs, ys = fitted
    I = inf.score_influence(Xs, ys)
    frame = inf.to_frame(I, Xs)
    assert frame.index.name == "test_row" and frame.columns.name == "train_row"
    assert frame.loc["patient-153", "patient-7"] == I[3, 7]
    s = inf.to_frame(inf.self_influence())
    assert s.index[0] == "patient-0" and s.loc["patient-9"] == inf.self_influence()[9]
    mine = inf.to_frame(inf.self_influence(Xs, ys), Xs)
    assert list(mine.index) == list(Xs.index)


def test_top_k_as_a_long_table(fitted):
    inf, X, y, Xs, ys = fitted
    I = inf.score_influence(Xs, ys)
    long = inf.to_frame(inf.score_influence(Xs, ys, top_k=-3), Xs)
    assert list(long.columns) == ["test_row", "rank", "train_row", "influence"]
    assert len(long) == 30
    for row in long.itertuples():
        i, j = Xs.index.get_loc(row.test_row), X.index.get_loc(row.train_row)
        assert row.influence == I[i, j]
    first = long[long["rank"] == 0].set_index("test_row")["influence"]
    np.testing.assert_allclose(first.to_numpy(), I.min(axis=1))


def test_perturbation_names_its_features(fitted):
    inf, X, y, Xs, ys = fitted
    full = inf.score_influence(Xs, ys, kind="perturbation")
    frame = inf.to_frame(full, Xs)
    assert frame.columns.names == ["train_row", "feature"]
    assert frame.loc["patient-150", ("patient-2", "mean area")] == full[
        0, 2, list(X.columns).index("mean area")]
    top = inf.to_frame(inf.score_influence(Xs, ys, kind="perturbation", top_k=4), Xs)
    assert set(top["feature"]) <= set(X.columns)
    # In a Pipeline the names are the feature steps' output names.
    pipe = make_pipeline(StandardScaler().set_output(transform="pandas"),
                         LogisticRegression()).fit(X, y)
    inf = InfluenceEstimator(pipe).fit(X, y)
    top = inf.to_frame(inf.score_influence(Xs, ys, kind="perturbation", top_k=2))
    assert set(top["feature"]) <= set(X.columns)


def test_to_frame_refuses_what_it_cannot_label(fitted):
    inf, X, y, Xs, ys = fitted
    with pytest.raises(ValueError, match="one per training row"):
        inf.to_frame(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="X has 10 rows but the result has 3"):
        inf.to_frame(np.zeros((3, 150)), Xs)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), density=st.floats(0.05, 0.4),
       n_top=st.integers(1, 12))
def test_sparse_perturbation_reports_present_features_only(seed, density, n_top):
    rng = np.random.default_rng(seed)
    X = sp.random(80, 30, density=density, format="csr", random_state=seed)
    X.data[:] = rng.integers(1, 4, X.nnz)
    y = (np.asarray(X[:, :15].sum(axis=1)).ravel() > np.asarray(
        X[:, 15:].sum(axis=1)).ravel()).astype(int)
    if len(np.unique(y)) < 2:
        y[:2] = [0, 1]
    inf = InfluenceEstimator(LogisticRegression(C=1.0).fit(X, y)).fit(X, y)
    Xs, ys = X[:5], y[:5]
    full = inf.score_influence(Xs, ys, kind="perturbation")
    for k in (n_top, -n_top):
        rows, feats, vals = inf.score_influence(Xs, ys, kind="perturbation", top_k=k)
        present = X[rows.ravel(), feats.ravel()].A1 != 0
        assert present.all()
        np.testing.assert_array_equal(vals, full[np.arange(5)[:, None], rows, feats])
        # The best of the present pairs: the dense array restricted to them.
        masked = np.where(X.toarray()[None] != 0, full, -np.inf if k > 0 else np.inf)
        best = np.sort(masked.reshape(5, -1), axis=1)
        best = best[:, ::-1][:, :k] if k > 0 else best[:, :-k]
        np.testing.assert_allclose(vals, best)
    with pytest.raises(ValueError, match="features present"):
        inf.score_influence(Xs, ys, kind="perturbation", top_k=X.nnz + 1)
