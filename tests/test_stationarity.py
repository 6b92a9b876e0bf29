"""fit warns when theta-hat is not a minimiser of the objective on (X, y, w).

The fault sweep's cases: the check never ran for hinge models (a LinearSVC
trained on other data passed), a wrong ``sample_weight`` passed at 2000 rows
(the old threshold grew like sqrt(n)), and an SGDRegressor stopped after 18
epochs differed from leave-one-out by 23 % without a warning.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.svm import LinearSVC

from skinfluence import InfluenceEstimator

MESSAGE = r"not a minimum of its training objective.*does not look trained"


def _fit_quietly(model, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return InfluenceEstimator(model).fit(X, y, **kw)


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge"])
def test_linear_svc_trained_on_other_rows_warns(cancer, loss):
    Xtr, ytr, _, _ = cancer
    model = LinearSVC(loss=loss, C=0.5, max_iter=100_000, tol=1e-8)
    model.fit(Xtr[:270], ytr[:270])
    with pytest.warns(ConvergenceWarning, match=MESSAGE):
        InfluenceEstimator(model).fit(Xtr[270:], ytr[270:])
    inf = _fit_quietly(model, Xtr[:270], ytr[:270])
    assert inf.stationarity_ < 1e-3


def test_hinge_check_uses_the_subgradient_on_the_margin(cancer):
    # The exact hinge optimum has rows on the margin with a partial share of
    # their gradient: the smooth-hinge gradient is not zero there, the
    # least-norm subgradient is.
    Xtr, ytr, _, _ = cancer
    model = LinearSVC(loss="hinge", C=0.5, max_iter=100_000, tol=1e-8)
    model.fit(Xtr, ytr)
    inf = _fit_quietly(model, Xtr, ytr)
    assert inf.stationarity_ < 1e-6
    a = inf._adapter
    smooth = a.objective_gradient(inf._Z, inf._y, inf._s)
    assert np.linalg.norm(smooth) > 1e3 * inf.stationarity_


@pytest.mark.parametrize("n", [80, 2000])
def test_wrong_sample_weight_warns_at_any_n(n):
    X, y = make_classification(n, 10, random_state=0)
    w = np.random.default_rng(0).uniform(0.5, 1.5, n)
    model = LogisticRegression(tol=1e-10, max_iter=1000).fit(X, y, sample_weight=w)
    with pytest.warns(ConvergenceWarning, match=MESSAGE):
        InfluenceEstimator(model).fit(X, y)  # the weights not given
    assert _fit_quietly(model, X, y, sample_weight=w).stationarity_ < 1e-3


def test_sgd_regressor_stopped_early_warns():
    # 500 rows, 18 epochs: Newton step 1.9 typical rows' influence, which
    # the old sqrt(n)-scaled threshold let pass.
    X, y = make_regression(500, 10, noise=20, random_state=0)
    y = (y - y.mean()) / y.std()
    model = SGDRegressor(max_iter=18, tol=None, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # SGD's own
        model.fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"n_iter_ is \[18\]"):
        inf = InfluenceEstimator(model).fit(X, y)
    assert inf.stationarity_ > 1


def test_sgd_classifier_default_warns_and_converged_logistic_does_not(cancer):
    Xtr, ytr, _, _ = cancer
    with pytest.warns(ConvergenceWarning, match=MESSAGE):
        InfluenceEstimator(SGDClassifier(loss="log_loss", random_state=0)).fit(
            Xtr, ytr)
    inf = _fit_quietly(LogisticRegression(tol=1e-10), Xtr, ytr)
    assert inf.stationarity_ < 1e-3


def test_ratio_is_free_of_the_targets_units(diabetes):
    # Targets, coefficients and their error scaled by c: the gradient and a
    # row's gradient scale by c alike, and H not at all.
    Xtr, ytr, _, _ = diabetes
    ratios = []
    for c in (1.0, 1000.0):
        model = Ridge(alpha=0.1).fit(Xtr, c * ytr)
        model.coef_ = model.coef_ + c * 20.0  # off the minimiser
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ratios.append(InfluenceEstimator(model).fit(Xtr, c * ytr).stationarity_)
    assert ratios[0] > 1 and ratios[1] == pytest.approx(ratios[0], rel=1e-8)


@pytest.mark.parametrize("method", ["cg", "lissa", "arnoldi"])
def test_iterative_solvers_check_by_a_short_cg(cancer, method):
    # The check's quadratic forms come from cg to 1e-3 on the same operator,
    # with 16 sampled rows: the same verdicts, and the solver's own record
    # untouched.
    Xtr, ytr, _, _ = cancer
    kw = dict(method=method, tol=1.0, solver_params={"rank": 31} if (
        method == "arnoldi") else None)
    other = LogisticRegression(tol=1e-10).fit(Xtr[:270], ytr[:270])
    with pytest.warns(ConvergenceWarning, match=MESSAGE):
        inf = InfluenceEstimator(other, **kw).fit(Xtr[270:], ytr[270:])
    assert inf.stationarity_ > 10
    assert inf.solver_info_.get("n_solves", 0) == 0
    converged = LogisticRegression(tol=1e-10).fit(Xtr, ytr)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert InfluenceEstimator(converged, **kw).fit(Xtr, ytr).stationarity_ < 1e-3
