"""InfluenceEstimator's API: pipelines, model selection, top-k, bad input."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
)
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils._param_validation import InvalidParameterError

from skinfluence import InfluenceEstimator

from ._cases import load


@pytest.fixture(scope="module")
def cancer():
    return load("cancer")


@pytest.fixture(scope="module")
def fitted_logistic(cancer):
    Xtr, ytr, _, _ = cancer
    model = LogisticRegression(tol=1e-10, max_iter=10_000).fit(Xtr, ytr)
    return model, InfluenceEstimator(model).fit(Xtr, ytr)


def test_shapes_and_attributes(cancer, fitted_logistic):
    Xtr, ytr, Xte, yte = cancer
    model, inf = fitted_logistic
    assert inf.estimator_ is model  # a fitted model is used as is
    assert inf.n_train_ == len(ytr)
    assert inf.n_params_ == Xtr.shape[1] + 1
    assert inf.n_features_in_ == Xtr.shape[1]
    np.testing.assert_array_equal(inf.classes_, [0, 1])
    assert inf.score_influence(Xte, yte).shape == (len(yte), len(ytr))
    assert inf.influence_on_params(Xtr[:7], ytr[:7]).shape == (7, inf.n_params_)
    assert inf.self_influence().shape == (len(ytr),)
    assert inf.transform(Xte).shape == (len(yte), len(ytr))
    names = inf.get_feature_names_out()
    assert len(names) == len(ytr) and names[0] == "influenceestimator0"


def test_unfitted_estimator_is_cloned_and_fitted(cancer):
    Xtr, ytr, Xte, yte = cancer
    model = LogisticRegression()
    inf = InfluenceEstimator(model).fit(Xtr, ytr)
    assert inf.estimator_ is not model
    assert not hasattr(model, "coef_")
    np.testing.assert_allclose(
        inf.predict_proba(Xte), clone(model).fit(Xtr, ytr).predict_proba(Xte)
    )


def test_self_influence_defaults_to_training_rows(cancer, fitted_logistic):
    Xtr, ytr, _, _ = cancer
    _, inf = fitted_logistic
    np.testing.assert_allclose(inf.self_influence(), inf.self_influence(Xtr, ytr))
    assert np.all(inf.self_influence() >= 0)  # a row always helps itself


def test_self_influence_is_diagonal_of_score_influence(cancer, fitted_logistic):
    Xtr, ytr, _, _ = cancer
    _, inf = fitted_logistic
    rows = np.arange(0, len(ytr), 37)
    full = inf.score_influence(Xtr[rows], ytr[rows])
    np.testing.assert_allclose(
        inf.self_influence()[rows], full[np.arange(len(rows)), rows], rtol=1e-10
    )


def _refit_theta(model, X, y, weights):
    refit = clone(model).set_params(solver="newton-cholesky", tol=1e-12)
    refit.fit(X, y, sample_weight=weights)
    return np.r_[refit.coef_.ravel(), refit.intercept_]


def test_influence_on_params_matches_refits(cancer):
    Xtr, ytr, _, _ = cancer
    model = LogisticRegression(tol=1e-12, solver="newton-cholesky").fit(Xtr, ytr)
    first = InfluenceEstimator(model).fit(Xtr, ytr)
    newton = InfluenceEstimator(model, estimate="newton").fit(Xtr, ytr)
    rows = np.argsort(-first.self_influence())[:5]  # the hardest rows
    d_first = first.influence_on_params(Xtr[rows], ytr[rows])
    d_newton = newton.influence_on_params(Xtr[rows], ytr[rows])
    theta = _refit_theta(model, Xtr, ytr, None)
    eps = 1e-5
    for j, df, dn in zip(rows, d_first, d_newton):
        # First order: the derivative of the refit as row j's weight drops.
        w = np.ones(len(ytr))
        w[j] = 1 - eps
        down = _refit_theta(model, Xtr, ytr, w)
        w[j] = 1 + eps
        up = _refit_theta(model, Xtr, ytr, w)
        np.testing.assert_allclose(df, (down - up) / (2 * eps), rtol=1e-4,
                                   atol=1e-6 * np.abs(df).max())
        # Newton: nearer the actual leave-one-out change than first order,
        # even on these highest-leverage rows.
        keep = np.arange(len(ytr)) != j
        actual = _refit_theta(model, Xtr[keep], ytr[keep], None) - theta
        err_newton = np.linalg.norm(dn - actual)
        assert err_newton <= 0.25 * np.linalg.norm(actual)
        assert err_newton < np.linalg.norm(df - actual)


def test_influence_on_params_exact_for_ridge():
    X, y = load("diabetes")[:2]
    model = Ridge(alpha=0.5).fit(X, y)
    inf = InfluenceEstimator(model, estimate="newton").fit(X, y)
    delta = inf.influence_on_params(X[:4], y[:4])
    for j in range(4):
        keep = np.arange(len(y)) != j
        refit = Ridge(alpha=0.5).fit(X[keep], y[keep])
        np.testing.assert_allclose(
            delta[j], np.r_[refit.coef_, refit.intercept_] - inf.theta_,
            rtol=1e-8, atol=1e-10,
        )


def test_transform_sign_follows_prediction(cancer, fitted_logistic):
    # Row j supports the prediction at x when removing it lowers the
    # predicted class's decision value: positive entries.
    Xtr, ytr, Xte, _ = cancer
    model, inf = fitted_logistic
    T = inf.transform(Xte)
    rows = np.argsort(-np.abs(T).max(axis=0))[:5]
    base = model.decision_function(Xte)
    sign = np.where(base >= 0, 1.0, -1.0)
    for j in rows:
        keep = np.arange(len(ytr)) != j
        refit = clone(model).fit(Xtr[keep], ytr[keep])
        actual = sign * (base - refit.decision_function(Xte))
        assert np.corrcoef(T[:, j], actual)[0, 1] > 0.95


@pytest.mark.parametrize("model", [LogisticRegression(C=0.5), Ridge(alpha=2.0)])
def test_pipeline_equals_last_step_on_transformed_features(model, cancer):
    Xtr, ytr, Xte, yte = cancer
    Xtr = Xtr * 3 + 1  # give the scaler work to do
    Xte = Xte * 3 + 1
    pipe = make_pipeline(StandardScaler(), PCA(10, random_state=0), model)
    pipe.fit(Xtr, ytr)
    head, last = pipe[:-1], pipe[-1]
    for estimate in ("influence", "newton"):
        a = InfluenceEstimator(pipe, estimate=estimate).fit(Xtr, ytr)
        b = InfluenceEstimator(last, estimate=estimate).fit(head.transform(Xtr), ytr)
        np.testing.assert_allclose(
            a.score_influence(Xte, yte),
            b.score_influence(head.transform(Xte), yte), rtol=1e-10, atol=1e-14,
        )
        np.testing.assert_allclose(a.self_influence(), b.self_influence(), rtol=1e-10)
        np.testing.assert_allclose(a.transform(Xte), b.transform(head.transform(Xte)),
                                   rtol=1e-10, atol=1e-14)


def test_sparse_input_equals_dense(cancer):
    Xtr, ytr, Xte, yte = cancer
    model = LogisticRegression(tol=1e-10).fit(Xtr, ytr)
    for estimate in ("influence", "newton"):
        dense = InfluenceEstimator(model, estimate=estimate).fit(Xtr, ytr)
        sparse = InfluenceEstimator(model, estimate=estimate).fit(
            sp.csr_matrix(Xtr), ytr)
        np.testing.assert_allclose(
            sparse.score_influence(sp.csc_matrix(Xte), yte),
            dense.score_influence(Xte, yte), rtol=1e-10, atol=1e-14,
        )
        np.testing.assert_allclose(sparse.self_influence(), dense.self_influence(),
                                   rtol=1e-10, atol=1e-14)


def test_clone_get_params_and_model_selection(cancer):
    Xtr, ytr, Xte, yte = cancer
    inf = InfluenceEstimator(LogisticRegression(), estimate="newton", damping=1e-3)
    params = inf.get_params()
    assert params["estimate"] == "newton" and params["estimator__C"] == 1.0
    cloned = clone(inf)
    assert cloned.get_params()["damping"] == 1e-3
    assert cloned.estimator is not inf.estimator

    search = GridSearchCV(inf, {"estimator__C": [0.01, 1.0]}, cv=3).fit(Xtr, ytr)
    assert search.best_params_["estimator__C"] in (0.01, 1.0)
    assert search.best_estimator_.score_influence(Xte, yte).shape == (20, len(ytr))
    scores = cross_val_score(InfluenceEstimator(Ridge()), *load("diabetes")[:2], cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.3)


def test_delegation():
    X, y = load("diabetes")[:2]
    inf = InfluenceEstimator(Ridge()).fit(X, y)
    assert hasattr(inf, "predict") and not hasattr(inf, "predict_proba")
    assert hasattr(InfluenceEstimator(LogisticRegression()), "predict_proba")
    np.testing.assert_allclose(inf.predict(X), inf.estimator_.predict(X))
    assert inf.score(X, y) == pytest.approx(inf.estimator_.score(X, y))


# --------------------------------------------------------------------- top-k


def test_top_k_matches_full_matrix_for_any_chunking(cancer, fitted_logistic):
    Xtr, ytr, Xte, yte = cancer
    _, inf = fitted_logistic
    full = inf.score_influence(Xte, yte)
    order = np.argsort(-full, axis=1)
    for working_memory, n_jobs in [(1024, None), (0.01, None), (0.01, 2)]:
        inf.set_params(n_jobs=n_jobs)
        with config_context(working_memory=working_memory):
            idx, val = inf.score_influence(Xte, yte, top_k=7)
            hidx, hval = inf.score_influence(Xte, yte, top_k=-4)
            again = inf.score_influence(Xte, yte)
        np.testing.assert_array_equal(idx, order[:, :7])
        np.testing.assert_allclose(val, np.take_along_axis(full, order[:, :7], 1))
        np.testing.assert_array_equal(hidx, order[:, ::-1][:, :4])
        np.testing.assert_allclose(hval, np.sort(full, axis=1)[:, :4])
        np.testing.assert_allclose(again, full, rtol=1e-12, atol=1e-15)
    inf.set_params(n_jobs=None)


@pytest.mark.parametrize("estimate", ["influence", "newton"])
def test_top_k_memory_stays_bounded(estimate):
    # The full matrix would be 400 x 60000 x 8 B = 192 MB; top_k must not
    # come near it.
    X, y = make_classification(60_400, 10, random_state=0)
    Xtr, ytr, Xte, yte = X[:60_000], y[:60_000], X[60_000:], y[60_000:]
    model = LogisticRegression().fit(Xtr, ytr)
    inf = InfluenceEstimator(model, estimate=estimate).fit(Xtr, ytr)
    with config_context(working_memory=16):
        tracemalloc.start()
        idx, val = inf.score_influence(Xte, yte, top_k=10)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert idx.shape == (400, 10)
    assert peak < 60e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("estimate", ["influence", "newton"])
def test_working_memory_is_shared_by_the_jobs(estimate):
    # Two jobs each holding a chunk sized for the whole working_memory would
    # double the peak; the budget is for the call.
    X, y = make_classification(40_200, 10, random_state=0)
    Xtr, ytr, Xte, yte = X[:40_000], y[:40_000], X[40_000:], y[40_000:]
    model = LogisticRegression().fit(Xtr, ytr)
    inf = InfluenceEstimator(model, estimate=estimate, n_jobs=2).fit(Xtr, ytr)
    budget = 8 * 2**20
    with config_context(working_memory=budget / 2**20):
        tracemalloc.start()
        inf.score_influence(Xte, yte, top_k=5)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 1.25 * budget, f"peak {peak / 2**20:.1f} MiB"


# ------------------------------------------------------------------ bad input


def test_unsupported_models_are_refused(cancer):
    Xtr, ytr, _, _ = cancer
    # Models that stay unsupported say why; the others list what is.
    with pytest.raises(TypeError, match="DecisionTreeClassifier is not supported "
                                        "by skinfluence: trees .* piecewise"):
        InfluenceEstimator(DecisionTreeClassifier()).fit(Xtr, ytr)
    y3 = np.digitize(Xtr[:, 0], np.quantile(Xtr[:, 0], [1 / 3, 2 / 3]))
    with pytest.raises(ValueError, match="l1 penalty on 3 classes keeps a different "
                                         "support per class"):
        InfluenceEstimator(LogisticRegression(l1_ratio=1.0, solver="saga",
                                              C=0.1)).fit(Xtr, y3)
    with pytest.raises(TypeError, match="KNeighborsClassifier is not supported.*"
                                        "Supported models"):
        InfluenceEstimator(KNeighborsClassifier()).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="modified_huber"):
        InfluenceEstimator(SGDClassifier(loss="modified_huber")).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="crammer_singer"):
        InfluenceEstimator(LinearSVC(multi_class="crammer_singer")).fit(Xtr, ytr)


def test_bad_inputs_get_specific_errors(cancer, fitted_logistic):
    Xtr, ytr, Xte, yte = cancer
    _, inf = fitted_logistic
    with pytest.raises(NotFittedError):
        InfluenceEstimator(LogisticRegression()).score_influence(Xte, yte)
    bad = Xte.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        inf.score_influence(bad, yte)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        inf.transform(bad)
    with pytest.raises(ValueError, match="features"):
        inf.score_influence(Xte[:, :5], yte)
    with pytest.raises(ValueError, match=r"never saw: \[3\].*classes_ are \[0, 1\]"):
        inf.score_influence(Xte, np.full(len(yte), 3))
    with pytest.raises(ValueError, match="rows but y has"):
        inf.score_influence(Xte, yte[:-1])
    with pytest.raises(ValueError, match="top_k"):
        inf.score_influence(Xte, yte, top_k=0)
    with pytest.raises(ValueError, match="top_k"):
        inf.score_influence(Xte, yte, top_k=10**6)
    with pytest.raises(ValueError, match="requires y"):
        InfluenceEstimator(LogisticRegression()).fit(Xtr, None)
    with pytest.raises(InvalidParameterError, match="estimate"):
        InfluenceEstimator(LogisticRegression(), estimate="exact").fit(Xtr, ytr)
    with pytest.raises(InvalidParameterError, match="damping"):
        InfluenceEstimator(LogisticRegression(), damping=-1.0).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="features"):
        InfluenceEstimator(inf.estimator_).fit(Xtr[:, :5], ytr)


def test_singular_hessian_names_damping():
    X, y = load("diabetes")[:2]
    X = np.hstack([X, X[:, :1]])  # a duplicated column
    model = LinearRegression().fit(X, y)
    with pytest.raises(ValueError, match=r"not positive definite.*damping"):
        InfluenceEstimator(model).fit(X, y)
    inf = InfluenceEstimator(model, damping=1e-6).fit(X, y)
    assert np.all(np.isfinite(inf.score_influence(X[:3], y[:3])))


def test_refitted_model_must_be_refit_in_wrapper(cancer):
    Xtr, ytr, Xte, yte = cancer
    model = LogisticRegression().fit(Xtr, ytr)
    inf = InfluenceEstimator(model).fit(Xtr, ytr)
    model.set_params(C=0.1).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="changed since.*fit again"):
        inf.score_influence(Xte, yte)


def test_model_trained_on_other_data_warns(cancer):
    Xtr, ytr, _, _ = cancer
    model = LogisticRegression().fit(Xtr[:200], ytr[:200])
    with pytest.warns(ConvergenceWarning, match="does not look trained"):
        InfluenceEstimator(model).fit(Xtr[200:], ytr[200:])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        InfluenceEstimator(model).fit(Xtr[:200], ytr[:200])


def test_newton_is_refused_nowhere_for_glms_and_ekfac_is(cancer):
    Xtr, ytr, _, _ = cancer
    with pytest.raises(ValueError, match="ekfac.*torch"):
        InfluenceEstimator(LogisticRegression(), method="ekfac").fit(Xtr, ytr)
