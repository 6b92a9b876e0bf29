"""CV variants and fitted searches: influence on the model they refitted.

RidgeCV and LogisticRegressionCV are influence-wise the Ridge or
LogisticRegression they refit on all rows at ``alpha_`` / ``C_`` (the search
held fixed); a fitted GridSearchCV is its ``best_estimator_``. Checked
against the plain model fitted at that hyperparameter, against refits
(leave-one-out and lowered weights), and through Pipelines.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import pearsonr
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    LogisticRegression,
    LogisticRegressionCV,
    Ridge,
    RidgeClassifier,
    RidgeClassifierCV,
    RidgeCV,
)
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X[:150], y[:150], X[150:170], y[150:170]


def _cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)[:, :10]
    return X[:200], y[:200], X[200:220], y[200:220]


def _digits():
    X, y = load_digits(n_class=3, return_X_y=True)
    X = StandardScaler().fit_transform(X / 16.0)[:, 16:32]
    return X[:400], y[:400], X[400:420], y[400:420]


def _fit_quietly(est, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # stationary
        return est.fit(X, y, **fit_params)


def test_ridgecv_is_the_ridge_at_its_alpha():
    X, y, Xte, yte = _diabetes()
    for cv in (None, 3):
        model = RidgeCV(alphas=np.logspace(-3, 2, 12), cv=cv).fit(X, y)
        est = _fit_quietly(InfluenceEstimator(model, estimate="newton"), X, y)
        plain = Ridge(alpha=model.alpha_).fit(X, y)
        ref = InfluenceEstimator(plain, estimate="newton").fit(X, y)
        S = est.score_influence(Xte, yte)
        np.testing.assert_allclose(S, ref.score_influence(Xte, yte), rtol=1e-6,
                                   atol=1e-9 * np.abs(S).max())
        # Least squares: the Newton estimate is the exact refit.
        actual = loo_influence(model, X, y, Xte, yte, np.arange(10))
        np.testing.assert_allclose(S[:, :10], actual, rtol=1e-6,
                                   atol=1e-8 * np.abs(actual).max())


@pytest.mark.parametrize("data", [_cancer, _digits], ids=["binary", "multiclass"])
def test_ridge_classifier_cv_is_the_ridge_classifier_at_its_alpha(data):
    X, y, Xte, yte = data()
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    model = RidgeClassifierCV(alphas=np.logspace(-2, 2, 9)).fit(X, y, sample_weight=sw)
    est = _fit_quietly(InfluenceEstimator(model, estimate="newton"), X, y,
                       sample_weight=sw)
    plain = RidgeClassifier(alpha=model.alpha_).fit(X, y, sample_weight=sw)
    ref = InfluenceEstimator(plain, estimate="newton").fit(X, y, sample_weight=sw)
    S = est.score_influence(Xte, yte)
    np.testing.assert_allclose(S, ref.score_influence(Xte, yte), rtol=1e-6,
                               atol=1e-9 * np.abs(S).max())
    # Least squares on +-1 codes: the Newton estimate is the exact refit.
    rows = np.arange(0, 40, 4)
    actual = loo_influence(model, X, y, Xte, yte, rows, sample_weight=sw)
    np.testing.assert_allclose(S[:, rows], actual, rtol=1e-6,
                               atol=1e-8 * np.abs(actual).max())
    # The same on sparse input.
    sparse = RidgeClassifier(alpha=model.alpha_, tol=1e-12).fit(sp.csr_matrix(X), y,
                                                     sample_weight=sw)
    S_sp = InfluenceEstimator(sparse, estimate="newton").fit(
        sp.csr_matrix(X), y, sample_weight=sw).score_influence(sp.csr_matrix(Xte), yte)
    np.testing.assert_allclose(S_sp, S, rtol=1e-5, atol=1e-8 * np.abs(S).max())


@pytest.mark.parametrize("data", [_cancer, _digits], ids=["binary", "multinomial"])
def test_logistic_regression_cv_is_the_fit_at_its_C(data):
    X, y, Xte, yte = data()
    model = LogisticRegressionCV(Cs=[0.01, 0.1, 1.0], tol=1e-12, max_iter=5000,
                                 solver="newton-cholesky", cv=3, l1_ratios=(0.0,),
                                 scoring="neg_log_loss").fit(X, y)
    est = _fit_quietly(InfluenceEstimator(model, estimate="newton"), X, y)
    plain = LogisticRegression(C=float(np.ravel(model.C_)[0]), tol=1e-12,
                               max_iter=5000, solver="newton-cholesky").fit(X, y)
    np.testing.assert_allclose(est.theta_, InfluenceEstimator(plain).fit(
        X, y).theta_, rtol=1e-6, atol=1e-8)
    rows = np.arange(0, 60, 3)
    S = est.score_influence(Xte, yte)[:, rows]
    actual = loo_influence(model, X, y, Xte, yte, rows)
    r = pearsonr(S.ravel(), actual.ravel())[0]
    assert r >= 0.995, r
    # First order: the derivative under a lowered weight.
    first = InfluenceEstimator(model).fit(X, y).score_influence(Xte, yte)[:, rows]
    eps = loo_influence(model, X, y, Xte, yte, rows, epsilon=1e-5)
    np.testing.assert_allclose(first, eps, rtol=1e-3, atol=1e-4 * np.abs(eps).max())


def test_fitted_search_is_its_best_estimator():
    X, y, Xte, yte = _cancer()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-10,
                                                              max_iter=5000))
    search = GridSearchCV(pipe, {"logisticregression__C": [0.05, 0.5]}, cv=3)
    search.fit(X, y)
    est = InfluenceEstimator(search).fit(X, y)
    ref = InfluenceEstimator(search.best_estimator_).fit(X, y)
    np.testing.assert_allclose(est.score_influence(Xte, yte),
                               ref.score_influence(Xte, yte), rtol=1e-12)
    assert est.predict(Xte).tolist() == search.predict(Xte).tolist()
    # An unfitted search is fitted by fit, then unwrapped the same way.
    fresh = InfluenceEstimator(RandomizedSearchCV(
        Ridge(), {"alpha": [0.1, 1.0, 10.0]}, n_iter=3, cv=3, random_state=0))
    Xd, yd, Xdt, ydt = _diabetes()
    fresh.fit(Xd, yd)
    best = fresh.estimator_.best_estimator_
    np.testing.assert_allclose(
        fresh.score_influence(Xdt, ydt),
        InfluenceEstimator(best).fit(Xd, yd).score_influence(Xdt, ydt), rtol=1e-12)


def test_refusals_name_the_reason():
    X, y, _, _ = _cancer()
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, refit=False,
                          cv=3).fit(X, y)
    with pytest.raises(ValueError, match=r"refit=False\) keeps no refitted model"):
        InfluenceEstimator(search).fit(X, y)
    cv = LogisticRegressionCV(Cs=[0.1, 1.0], refit=False, cv=3, l1_ratios=(0.0,),
                              scoring="neg_log_loss").fit(X, y)
    with pytest.raises(ValueError, match=r"refit=False\) averages the folds'"):
        InfluenceEstimator(cv).fit(X, y)


@pytest.mark.parametrize("model, why", [
    ("HistGradientBoostingClassifier", "piecewise constant"),
    ("RandomForestRegressor", "piecewise constant"),
    ("CalibratedClassifierCV", "calibrators fitted on cross-validation folds"),
    ("BayesianRidge", r"Ridge\(alpha=model.lambda_ / model.alpha_\)"),
    ("QuantileRegressor", "no second derivative"),
])
def test_what_stays_unsupported_says_why(model, why):
    import sklearn.calibration
    import sklearn.ensemble
    import sklearn.linear_model

    cls = next(getattr(m, model) for m in (sklearn.ensemble, sklearn.linear_model,
                                           sklearn.calibration) if hasattr(m, model))
    X, y, _, _ = _cancer()
    with pytest.raises(TypeError, match=f"{model} is not supported by skinfluence: "
                                        f".*{why}"):
        InfluenceEstimator(cls()).fit(X, y)
    # Inside a Pipeline too.
    with pytest.raises(TypeError, match=why):
        InfluenceEstimator(make_pipeline(StandardScaler(), cls())).fit(X, y)


def test_the_ridge_suggested_for_bayesian_ridge_is_its_posterior_mean():
    from sklearn.linear_model import BayesianRidge

    X, y, _, _ = _diabetes()
    model = BayesianRidge().fit(X, y)
    ridge = Ridge(alpha=model.lambda_ / model.alpha_).fit(X, y)
    np.testing.assert_allclose(ridge.coef_, model.coef_, rtol=1e-8,
                               atol=1e-10 * np.abs(model.coef_).max())
