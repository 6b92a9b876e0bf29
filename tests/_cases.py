"""Real bundled data sets and every supported model configuration.

Each case is (name, factory, data name, fit keyword arguments); the data are
(X_train, y_train, X_test, y_test), standardised where the model needs it.
"""

import functools

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import (
    GammaRegressor,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
    TweedieRegressor,
)
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR

from skinfluence._hinge_qp import hinge_refit
from skinfluence.models import get_adapter
from skinfluence.validation import _refit_newton


def _split(X, y, n_test, seed):
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


@functools.cache
def load(name):
    if name == "cancer":  # 549 training rows, 30 standardised features
        X, y = load_breast_cancer(return_X_y=True)
        return _split(StandardScaler().fit_transform(X), y, 20, seed=0)
    if name == "diabetes":  # regression, features scaled by scikit-learn
        X, y = load_diabetes(return_X_y=True)
        return _split(X, y, 20, seed=0)
    if name == "diabetes_std":  # standardised target too, for SGD
        X, y = load_diabetes(return_X_y=True)
        X = StandardScaler().fit_transform(X)
        return _split(X, (y - y.mean()) / y.std(), 20, seed=0)
    if name == "diabetes_pos":  # standardised features, positive target
        X, y = load_diabetes(return_X_y=True)
        return _split(StandardScaler().fit_transform(X), y, 20, seed=0)
    if name == "cancer_reg":  # regression: mean radius from 20 other features
        X, _ = load_breast_cancer(return_X_y=True)
        X = StandardScaler().fit_transform(X)
        return _split(X[:, 10:], X[:, 0], 20, seed=0)
    if name == "diabetes_bin":  # not separable: fits without penalty exist
        X, y = load_diabetes(return_X_y=True)
        X = StandardScaler().fit_transform(X)
        return _split(X, (y > np.median(y)).astype(int), 20, seed=0)
    if name == "diabetes_3":  # three classes, not separable
        X, y = load_diabetes(return_X_y=True)
        X = StandardScaler().fit_transform(X)
        return _split(X, np.digitize(y, np.quantile(y, [1 / 3, 2 / 3])), 20, seed=0)
    if name == "digits":  # ten classes, pixels in [0, 1]
        X, y = load_digits(return_X_y=True)
        Xtr, ytr, Xte, yte = _split(X / 16.0, y, 10, seed=1)
        return Xtr[:1200], ytr[:1200], Xte, yte
    if name == "digits_pca5":  # ten classes in 5 dimensions: not separable
        Xtr, ytr, Xte, yte = load("digits")
        pca = PCA(n_components=5, random_state=0).fit(Xtr)
        return pca.transform(Xtr), ytr, pca.transform(Xte), yte
    if name == "digits17":
        X, y = load_digits(return_X_y=True)
        keep = (y == 1) | (y == 7)
        return _split(X[keep] / 16.0, y[keep], 20, seed=1)
    raise KeyError(name)


def weights(name):
    n = len(load(name)[1])
    return np.random.default_rng(3).uniform(0.5, 2.0, n)


_SGD = dict(random_state=0, max_iter=3000, tol=None, average=True)
# Default regularisation, tight solver tolerances: the estimates are taken at
# the fitted parameters, the truth between exact optima.
_LR = dict(tol=1e-10, max_iter=10_000)
_SVC = dict(tol=1e-10, max_iter=100_000)
_GLM = dict(solver="newton-cholesky", tol=1e-12, max_iter=1000)

# name, factory, data, uses sample_weight
CASES = [
    ("LinearRegression", lambda: LinearRegression(), "diabetes", False),
    ("LinearRegression-noint", lambda: LinearRegression(fit_intercept=False),
     "diabetes", False),
    ("Ridge", lambda: Ridge(), "diabetes", False),
    ("Ridge-noint-sw", lambda: Ridge(alpha=0.1, fit_intercept=False), "diabetes",
     True),
    ("SGDRegressor", lambda: SGDRegressor(alpha=1e-3, **_SGD), "diabetes_std",
     False),
    ("Logistic", lambda: LogisticRegression(**_LR), "cancer", False),
    ("Logistic-C0.05-sw", lambda: LogisticRegression(C=0.05, **_LR), "cancer", True),
    ("Logistic-balanced", lambda: LogisticRegression(class_weight="balanced", **_LR),
     "cancer", False),
    ("Logistic-noint", lambda: LogisticRegression(fit_intercept=False, **_LR), "cancer",
     False),
    ("Logistic-liblinear", lambda: LogisticRegression(
        solver="liblinear", intercept_scaling=2.0, **_LR), "cancer", False),
    ("Logistic-nopenalty", lambda: LogisticRegression(C=np.inf, **_LR), "diabetes_bin",
     False),
    ("Softmax", lambda: LogisticRegression(**_LR), "digits", False),
    ("Softmax-sw", lambda: LogisticRegression(**_LR), "digits", True),
    ("Softmax-nopenalty-sw", lambda: LogisticRegression(C=np.inf, **_LR),
     "digits_pca5", True),
    ("SGDClassifier-log", lambda: SGDClassifier(loss="log_loss", alpha=1e-2, **_SGD),
     "cancer", False),
    ("LinearSVC", lambda: LinearSVC(**_SVC), "diabetes_bin", False),
    ("LinearSVC-ovr", lambda: LinearSVC(C=0.1, **_SVC), "diabetes_3", False),
    ("LinearSVC-hinge", lambda: LinearSVC(loss="hinge", C=0.1, **_SVC), "cancer",
     False),
    ("SGDClassifier-hinge", lambda: SGDClassifier(loss="hinge", alpha=1e-2, **_SGD),
     "cancer", False),
    ("SVC-linear-hinge", lambda: SVC(kernel="linear", C=0.1, tol=1e-10), "cancer",
     True),
    ("LinearSVR-squared", lambda: LinearSVR(loss="squared_epsilon_insensitive",
                                            epsilon=0.1, C=0.1, dual=False, **_SVC),
     "cancer_reg", False),
    ("LinearSVR-hinge", lambda: LinearSVR(epsilon=0.1, C=0.1, **_SVC), "cancer_reg",
     False),
    ("SVR-linear-hinge-sw", lambda: SVR(kernel="linear", epsilon=0.1, C=0.1,
                                        tol=1e-10), "cancer_reg", True),
    ("RidgeClassifier-balanced", lambda: RidgeClassifier(alpha=0.5,
                                                         class_weight="balanced"),
     "cancer", False),
    ("RidgeClassifier-3-sw", lambda: RidgeClassifier(), "diabetes_3", True),
    # scikit-learn's GLMs: means over the sample weights.
    ("Poisson", lambda: PoissonRegressor(alpha=1e-3, **_GLM), "diabetes_pos", False),
    ("Poisson-sw-lbfgs", lambda: PoissonRegressor(alpha=1e-2, tol=1e-12,
                                                  max_iter=10_000),
     "diabetes_pos", True),
    ("Gamma", lambda: GammaRegressor(alpha=1e-2, **_GLM), "diabetes_pos", False),
    ("Tweedie-1.5", lambda: TweedieRegressor(power=1.5, alpha=1e-2, **_GLM),
     "diabetes_pos", True),
    ("Tweedie-3", lambda: TweedieRegressor(power=3, alpha=1e-2, **_GLM),
     "diabetes_pos", False),
    ("Tweedie-1.5-identity", lambda: TweedieRegressor(
        power=1.5, link="identity", alpha=1e-2, **_GLM), "diabetes_pos", False),
    ("Tweedie-0-noint", lambda: TweedieRegressor(power=0, alpha=0.1,
                                                 fit_intercept=False, **_GLM),
     "diabetes_std", False),
]

SMOOTH = [c for c in CASES if "hinge" not in c[0] and "SV" not in c[0]]
# Least squares, where the Newton step is the exact refit (re-balanced class
# weights move the other rows' curvature too, which the step neglects).
LEAST_SQUARES = [c for c in CASES if (c[2].startswith("diabetes") and "Reg" in c[0]
                                      or c[0].startswith("Ridge"))
                 and "balanced" not in c[0]]


@functools.cache
def fitted(case, polish=True):
    """The case's model fitted on its training data, and the data.

    SGD stops near, not at, the optimum of its objective, and so does
    liblinear's hinge solver; with ``polish`` their parameters are moved to
    the exact optimum (Newton's method on the same objective, or the exact
    hinge QP), so that fidelity tests measure the estimates, not the solvers.
    """
    name, factory, data, use_sw = case
    Xtr, ytr, Xte, yte = load(data)
    sw = weights(data) if use_sw else None
    model = factory().fit(Xtr, ytr, sample_weight=sw)
    # libsvm (SVC, SVR) solves its dual to tol and keeps coef_ read-only.
    libsvm = isinstance(model, (SVC, SVR))
    if polish and (name.startswith("SGD") or "hinge" in name) and not libsvm:
        adapter = get_adapter(model, y=ytr, sample_weight=sw, n_train=len(ytr))
        w = np.ones(len(ytr)) if sw is None else sw
        if "hinge" in name:  # liblinear's dual CD stops short too
            y_enc = adapter.encode_y(ytr)
            theta, _ = hinge_refit(adapter, adapter.features(Xtr), y_enc,
                                   adapter.row_scale(y_enc, w))
        else:
            theta = _refit_newton(model, adapter, Xtr, ytr, w, 0, 0.0)
        W = theta.reshape(adapter.n_outputs, -1)
        model.coef_ = W[:, :-1].reshape(model.coef_.shape).copy()
        model.intercept_ = W[:, -1].copy()
    return model, (Xtr, ytr, Xte, yte), sw
