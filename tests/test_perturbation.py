"""score_influence(kind="perturbation"): Koh & Liang's I_pert,loss.

The truth is the central finite difference of actual refits with one training
feature nudged by +-h; the rest checks layouts: dense equals sparse, top-k
equals the top of the full array for any chunking, a Pipeline equals its last
step on transformed features.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from joblib import parallel_config
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator
from skinfluence._perturbation import perturbation_influence

_LR = dict(tol=1e-12, solver="newton-cholesky", max_iter=1000)


def _theta(model):
    coef = np.atleast_2d(model.coef_)
    return np.hstack([coef, np.ravel(model.intercept_)[:, None]]).ravel()


def _refit_derivative(inf, model, X_train, y_train, X_test, y_test, j, f, h):
    """Central difference of the test losses over refits with x_jf +- h."""
    a = inf._adapter
    Z_test, y_enc = a.features(X_test), a.encode_y(y_test)
    losses = []
    for step in (h, -h):
        X = X_train.copy()
        X[j, f] += step
        refit = a.with_theta(_theta(clone(model).fit(X, y_train)))
        losses.append(refit.loss_from_raw(y_enc, refit.raw_prediction(Z_test)))
    return (losses[0] - losses[1]) / (2 * h)


def _most_active_rows(inf, n):
    """Training rows with the largest loss gradients: clear derivatives."""
    g, _ = inf._adapter.pointwise_grad_hess(inf._y, inf._raw)
    return np.argsort(-np.linalg.norm(g, axis=1))[:n]


def _digits_pca5(digits):
    X_train, y_train, X_test, y_test = digits
    pca = PCA(n_components=5, random_state=0).fit(X_train)
    return (pca.transform(X_train[:400]), y_train[:400],
            pca.transform(X_test), y_test)


@pytest.mark.parametrize(
    "case, model, rtol",
    [
        ("cancer", LogisticRegression(**_LR), 1e-5),
        ("cancer", LogisticRegression(class_weight="balanced", **_LR), 1e-5),
        ("diabetes", Ridge(alpha=1.0), 1e-7),
        ("digits_pca5", LogisticRegression(**_LR), 1e-5),
    ],
    ids=["logistic", "logistic-balanced", "ridge", "softmax"],
)
def test_matches_refit_finite_difference(request, case, model, rtol):
    if case == "digits_pca5":
        X_train, y_train, X_test, y_test = _digits_pca5(
            request.getfixturevalue("digits"))
    else:
        X_train, y_train, X_test, y_test = request.getfixturevalue(case)
    model = clone(model).fit(X_train, y_train)
    inf = InfluenceEstimator(model).fit(X_train, y_train)
    I = inf.score_influence(X_test, y_test, kind="perturbation")
    assert I.shape == (len(y_test), len(y_train), X_train.shape[1])

    n_features = X_train.shape[1]
    rows = _most_active_rows(inf, 3)
    for j, f in zip(rows, [0, n_features // 2, n_features - 1]):
        fd = _refit_derivative(inf, model, X_train, y_train, X_test, y_test,
                               j, f, h=1e-4)
        assert np.abs(fd).max() > 1e-6
        assert_allclose(I[:, j, f], fd, rtol=rtol, atol=rtol * np.abs(fd).max())


def test_newton_estimate_is_the_same_derivative(cancer):
    X_train, y_train, X_test, y_test = cancer
    model = LogisticRegression(**_LR).fit(X_train, y_train)
    first = InfluenceEstimator(model).fit(X_train, y_train)
    newton = InfluenceEstimator(model, estimate="newton").fit(X_train, y_train)
    assert_allclose(
        newton.score_influence(X_test, y_test, kind="perturbation"),
        first.score_influence(X_test, y_test, kind="perturbation"),
        rtol=1e-12, atol=1e-15,
    )


def _sparse_data(n_classes, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 8)) * (rng.random((120, 8)) < 0.3)
    W = rng.normal(size=(8, n_classes))
    y = np.argmax(X @ W + rng.gumbel(size=(120, n_classes)), axis=1)
    return X[:100], y[:100], X[100:], y[100:]


@pytest.mark.parametrize(
    "model, n_classes",
    [(LogisticRegression(**_LR), 2), (LogisticRegression(**_LR), 3),
     (Ridge(alpha=0.5), 2), (LogisticRegression(fit_intercept=False, **_LR), 3)],
    ids=["binary", "softmax", "ridge", "softmax-no-intercept"],
)
def test_dense_equals_sparse(model, n_classes):
    X_train, y_train, X_test, y_test = _sparse_data(n_classes)
    model = clone(model).fit(X_train, y_train)
    dense = InfluenceEstimator(model).fit(X_train, y_train)
    sparse = InfluenceEstimator(model).fit(sp.csr_matrix(X_train), y_train)
    I = dense.score_influence(X_test, y_test, kind="perturbation")
    assert I.shape == (20, 100, 8)
    assert_allclose(
        sparse.score_influence(sp.csr_matrix(X_test), y_test, kind="perturbation"),
        I, rtol=1e-10, atol=1e-14 * np.abs(I).max(),
    )


@pytest.mark.parametrize("k", [1, 7, -5, 120])
@pytest.mark.parametrize("working_memory", [0.001, 1024])
def test_top_k_equals_top_of_full_array(cancer, k, working_memory):
    X_train, y_train, X_test, y_test = cancer
    X_train, y_train = X_train[:200], y_train[:200]
    model = LogisticRegression(**_LR).fit(X_train, y_train)
    inf = InfluenceEstimator(model).fit(X_train, y_train)
    full = inf.score_influence(X_test, y_test, kind="perturbation")
    n_test, _, n_features = full.shape
    flat = full.reshape(n_test, -1)
    order = np.argsort(-flat if k > 0 else flat, axis=1)[:, : abs(k)]
    with config_context(working_memory=working_memory):
        if working_memory < 1:
            with pytest.warns(UserWarning, match="working_memory"):
                rows, features, values = inf.score_influence(
                    X_test, y_test, kind="perturbation", top_k=k)
                chunked = inf.score_influence(X_test, y_test, kind="perturbation")
        else:
            rows, features, values = inf.score_influence(
                X_test, y_test, kind="perturbation", top_k=k)
            chunked = full
    assert rows.shape == features.shape == values.shape == (n_test, abs(k))
    assert_array_equal(rows, order // n_features)
    assert_array_equal(features, order % n_features)
    # Chunking changes only the rounding of the products.
    tol = dict(rtol=1e-10, atol=1e-13 * np.abs(full).max())
    assert_allclose(values, np.take_along_axis(flat, order, axis=1), **tol)
    assert_allclose(values, full[np.arange(n_test)[:, None], rows, features],
                    **tol)
    assert_allclose(chunked, full, **tol)


def test_top_k_counts_pairs_not_rows(cancer):
    X_train, y_train, X_test, y_test = cancer
    X_train, y_train = X_train[:40], y_train[:40]
    model = LogisticRegression(**_LR).fit(X_train, y_train)
    inf = InfluenceEstimator(model).fit(X_train, y_train)
    n_pairs = 40 * X_train.shape[1]
    rows, features, values = perturbation_influence(
        inf, X_test, y_test, top_k=-n_pairs)
    full = inf.score_influence(X_test, y_test, kind="perturbation")
    assert_allclose(values, np.sort(full.reshape(len(y_test), -1), axis=1))
    with pytest.raises(ValueError, match="n_train_ \\* n_features"):
        perturbation_influence(inf, X_test, y_test, top_k=n_pairs + 1)
    with pytest.raises(ValueError, match="non-zero integer"):
        perturbation_influence(inf, X_test, y_test, top_k=0)


def test_parallel_equals_serial(cancer):
    X_train, y_train, X_test, y_test = cancer
    model = LogisticRegression(**_LR).fit(X_train, y_train)
    serial = InfluenceEstimator(model).fit(X_train, y_train)
    parallel = InfluenceEstimator(model, n_jobs=2).fit(X_train, y_train)
    expected = serial.score_influence(X_test, y_test, kind="perturbation")
    with parallel_config(backend="threading"), config_context(working_memory=1):
        got = parallel.score_influence(X_test, y_test, kind="perturbation")
        top = parallel.score_influence(X_test, y_test, kind="perturbation",
                                       top_k=3)
    tol = dict(rtol=1e-10, atol=1e-13 * np.abs(expected).max())
    assert_allclose(got, expected, **tol)
    assert_allclose(top[2], serial.score_influence(
        X_test, y_test, kind="perturbation", top_k=3)[2], **tol)


def test_pipeline_equals_last_step_on_transformed_features(cancer):
    X_train, y_train, X_test, y_test = cancer
    # Undo the fixture's scaling so the pipeline's scaler does real work.
    X_train, X_test = 3.0 * X_train + 1.0, 3.0 * X_test + 1.0
    pipe = make_pipeline(StandardScaler(), LogisticRegression(**_LR))
    pipe.fit(X_train, y_train)
    scaler, model = pipe[0], pipe[-1]
    via_pipe = InfluenceEstimator(pipe).fit(X_train, y_train).score_influence(
        X_test, y_test, kind="perturbation")
    bare = InfluenceEstimator(model).fit(scaler.transform(X_train), y_train)
    expected = bare.score_influence(scaler.transform(X_test), y_test,
                                    kind="perturbation")
    assert via_pipe.shape == (len(y_test), len(y_train), X_train.shape[1])
    assert_allclose(via_pipe, expected, rtol=1e-12, atol=1e-18)
