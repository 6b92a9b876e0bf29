"""OneVsRestClassifier and TransformedTargetRegressor, unwrapped.

One-vs-rest is K independent binary objectives summed into one GLM with K
outputs; a TransformedTargetRegressor is its regressor on the transformed
target, its loss measured there. Truth: refits (leave-one-out and lowered
weights), the equivalent GLM (LinearSVC's own one-vs-rest) and the
regressor fitted on the transformed target by hand.
"""

import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import LogisticRegression, PoissonRegressor, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence

from ._cases import load

_LR = dict(tol=1e-12, max_iter=10_000)


def test_one_vs_rest_of_logistic_regressions_follows_refits():
    Xtr, ytr, Xte, yte = load("diabetes_3")
    model = OneVsRestClassifier(LogisticRegression(**_LR)).fit(Xtr, ytr)
    rows = np.arange(0, len(ytr), 30)
    est = InfluenceEstimator(model, estimate="newton").fit(Xtr, ytr)
    assert est.n_params_ == 3 * (Xtr.shape[1] + 1)
    actual = loo_influence(model, Xtr, ytr, Xte, yte, rows)
    S = est.score_influence(Xte, yte)[:, rows]
    r = np.corrcoef(S.ravel(), actual.ravel())[0, 1]
    assert r >= 0.9999, r
    first = InfluenceEstimator(model).fit(Xtr, ytr)
    eps = loo_influence(model, Xtr, ytr, Xte, yte, rows, epsilon=1e-6)
    np.testing.assert_allclose(first.score_influence(Xte, yte)[:, rows], eps,
                               rtol=1e-4, atol=1e-5 * np.abs(eps).max())
    np.testing.assert_array_equal(est.predict(Xte), model.predict(Xte))


def test_one_vs_rest_of_squared_hinges_is_linear_svcs_own():
    Xtr, ytr, Xte, yte = load("diabetes_3")
    ovr = OneVsRestClassifier(LinearSVC(C=0.1, tol=1e-12, max_iter=100_000))
    ovr.fit(Xtr, ytr)
    svc = LinearSVC(C=0.1, tol=1e-12, max_iter=100_000).fit(Xtr, ytr)
    S = InfluenceEstimator(ovr).fit(Xtr, ytr).score_influence(Xte, yte)
    ref = InfluenceEstimator(svc).fit(Xtr, ytr).score_influence(Xte, yte)
    np.testing.assert_allclose(S, ref, rtol=1e-5, atol=1e-7 * np.abs(ref).max())


def test_binary_one_vs_rest_is_its_one_model():
    Xtr, ytr, Xte, yte = load("cancer")
    ovr = OneVsRestClassifier(SVC(kernel="linear", C=0.1, tol=1e-10)).fit(Xtr, ytr)
    svc = SVC(kernel="linear", C=0.1, tol=1e-10).fit(Xtr, ytr)
    S = InfluenceEstimator(ovr).fit(Xtr, ytr).score_influence(Xte, yte)
    np.testing.assert_allclose(
        S, InfluenceEstimator(svc).fit(Xtr, ytr).score_influence(Xte, yte),
        rtol=1e-6, atol=1e-9 * np.abs(S).max())


def test_one_vs_rest_refusals():
    Xtr, ytr, _, _ = load("diabetes_3")
    weighted = OneVsRestClassifier(LogisticRegression(class_weight="balanced"))
    with pytest.raises(ValueError, match="weights each binary problem differently"):
        InfluenceEstimator(weighted).fit(Xtr, ytr)
    with pytest.raises(TypeError, match="DecisionTreeClassifier is not supported"):
        from sklearn.tree import DecisionTreeClassifier

        InfluenceEstimator(OneVsRestClassifier(DecisionTreeClassifier())).fit(Xtr, ytr)


@pytest.mark.parametrize("regressor, func, inverse", [
    (Ridge(alpha=1.0), np.log, np.exp),
    (PoissonRegressor(alpha=1e-2, solver="newton-cholesky", tol=1e-12), np.sqrt,
     np.square),
], ids=["Ridge-log", "Poisson-sqrt"])
def test_transformed_target_is_its_regressor_on_the_transformed_target(
        regressor, func, inverse):
    Xtr, ytr, Xte, yte = load("diabetes_pos")
    ttr = TransformedTargetRegressor(regressor, func=func, inverse_func=inverse)
    ttr.fit(Xtr, ytr)
    est = InfluenceEstimator(ttr, estimate="newton").fit(Xtr, ytr)
    S = est.score_influence(Xte, yte)
    ref = InfluenceEstimator(ttr.regressor_, estimate="newton").fit(
        Xtr, func(ytr)).score_influence(Xte, func(yte))
    np.testing.assert_allclose(S, ref, rtol=1e-12)
    rows = np.arange(0, len(ytr), 40)
    actual = loo_influence(ttr, Xtr, ytr, Xte, yte, rows)
    r = np.corrcoef(S[:, rows].ravel(), actual.ravel())[0, 1]
    assert r >= 0.9999, r
    np.testing.assert_allclose(est.predict(Xte), ttr.predict(Xte))
    # A refitted regressor is seen through the wrapper.
    ttr.fit(Xtr[:200], ytr[:200])
    with pytest.raises(ValueError, match="parameters changed"):
        est.score_influence(Xte, yte)


def test_meta_estimators_inside_pipelines():
    Xtr, ytr, Xte, yte = load("diabetes_3")
    pipe = make_pipeline(StandardScaler(), OneVsRestClassifier(
        LogisticRegression(**_LR))).fit(2 * Xtr + 1, ytr)
    ours = InfluenceEstimator(pipe).fit(2 * Xtr + 1, ytr).score_influence(
        2 * Xte + 1, yte)
    ref = InfluenceEstimator(pipe[-1]).fit(pipe[0].transform(2 * Xtr + 1),
                                           ytr).score_influence(
        pipe[0].transform(2 * Xte + 1), yte)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
