"""scikit-learn's GLMs: PoissonRegressor, GammaRegressor, TweedieRegressor.

Their objective is a mean over the sample weights, so leaving a row out
re-normalises all the others. The families' LOO fidelity, reweighting
derivative, finite differences and solver agreement run over the shared
cases (``tests/_cases.py``); here: the losses against scikit-learn's own,
the objective against its fits, sparse input, Pipelines, groups and bad
targets.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import PoissonRegressor, TweedieRegressor
from sklearn.metrics import mean_tweedie_deviance
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator
from skinfluence.models import get_adapter
from skinfluence.models._glm import TweedieLoss
from skinfluence.validation import loo_influence

from ._cases import _GLM, CASES, fitted, load

GLM_CASES = [c for c in CASES if c[2] == "diabetes_pos" or c[0].startswith("Tweedie")]

POWERS_LINKS = [(0.0, "log"), (1.0, "log"), (1.5, "log"), (2.0, "log"), (3.0, "log"),
                (-1.0, "identity"), (1.0, "identity"), (1.5, "identity"),
                (2.0, "identity")]


@pytest.mark.parametrize("power, link", POWERS_LINKS)
def test_tweedie_loss_is_scikit_learns(power, link):
    # scikit-learn's private losses are the oracle (test only).
    from sklearn._loss.loss import HalfTweedieLoss, HalfTweedieLossIdentity

    rng = np.random.default_rng(0)
    n = 200
    y = rng.gamma(2.0, 1.5, n) if power >= 1 else rng.normal(1.0, 1.0, n)
    if power == 1:
        y[::7] = 0.0  # zero counts
    if link == "identity":
        if power < 1:
            y = np.abs(y) + 0.1
        raw = rng.uniform(0.3, 4.0, n)
    else:
        raw = rng.normal(0.3, 0.7, n)
    ref = (HalfTweedieLoss if link == "log" else HalfTweedieLossIdentity)(power=power)
    ours = TweedieLoss(power, link)
    g, h = ours.objective_grad_hess(y, raw[:, None])
    g_ref, h_ref = ref.gradient_hessian(y_true=y, raw_prediction=raw)
    np.testing.assert_allclose(g[:, 0], g_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h[:, 0, 0], h_ref, rtol=1e-10, atol=1e-12)
    # Users see the deviance: twice the half loss, zero at mu = y.
    dev = ours.user_loss(y, raw[:, None])
    half = ref.loss(y_true=y, raw_prediction=raw) + ref.constant_to_optimal_zero(y)
    np.testing.assert_allclose(dev, 2 * half, rtol=1e-9, atol=1e-12)
    mu = np.exp(raw) if link == "log" else raw
    assert dev.mean() == pytest.approx(mean_tweedie_deviance(y, mu, power=power),
                                       rel=1e-10)
    # The objective's loss differs from the half deviance by a term in y.
    gap = ours.objective_loss(y, raw[:, None]) - half
    other = ours.objective_loss(y, raw[:, None] + 0.1) - (
        ref.loss(y_true=y, raw_prediction=raw + 0.1) + ref.constant_to_optimal_zero(y))
    np.testing.assert_allclose(gap, other, rtol=1e-9, atol=1e-9)
    # Loss changes at shifted raw predictions, with no cancellation.
    shift = rng.normal(0.0, 0.05, (n, 1, 3))
    moved = np.stack([ours.user_loss(y, raw[:, None] + shift[:, :, c])
                      for c in range(3)], axis=1)
    np.testing.assert_allclose(ours.loss_change(y, raw[:, None], shift),
                               moved - dev[:, None], rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("case", GLM_CASES, ids=[c[0] for c in GLM_CASES])
def test_fitted_glm_is_a_minimum_of_the_adapters_objective(case):
    # The stationarity test: scikit-learn's fit is a minimum of the objective
    # the adapter writes (mean over the weights, alpha/2 on the weights).
    model, (Xtr, ytr, _, _), sw = fitted(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = InfluenceEstimator(model).fit(Xtr, ytr, sample_weight=sw)
    assert est.stationarity_ < 1e-3, est.stationarity_  # lbfgs stops 1e-4 short
    # The test can fail: the same model read as if it had twice its alpha
    # (or as a sum instead of a mean) is far from that objective's minimum.
    a = get_adapter(model, y=ytr, sample_weight=sw, n_train=len(ytr))
    Z, y_enc = a.features(Xtr), a.encode_y(ytr)
    w = np.ones(len(ytr)) if sw is None else sw
    grad = a.objective_gradient(Z, y_enc, a.row_scale(y_enc, w))
    wrong = a.objective_gradient(Z, y_enc, a.row_scale(y_enc, w) * 2.0)
    assert np.linalg.norm(grad) < 1e-2 * np.linalg.norm(wrong)


def test_dense_and_sparse_agree():
    Xtr, ytr, Xte, yte = load("diabetes_pos")
    Xtr, Xte = np.maximum(Xtr, 0.0), np.maximum(Xte, 0.0)  # half zeros
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(ytr))
    dense = PoissonRegressor(alpha=1e-2, **_GLM).fit(Xtr, ytr, sample_weight=sw)
    sparse = PoissonRegressor(alpha=1e-2, **_GLM).fit(sp.csr_matrix(Xtr), ytr,
                                                       sample_weight=sw)
    for estimate in ("influence", "newton"):
        a = InfluenceEstimator(dense, estimate=estimate).fit(Xtr, ytr,
                                                             sample_weight=sw)
        b = InfluenceEstimator(sparse, estimate=estimate).fit(
            sp.csr_matrix(Xtr), ytr, sample_weight=sw)
        Sa = a.score_influence(Xte, yte)
        np.testing.assert_allclose(b.score_influence(sp.csr_matrix(Xte), yte), Sa,
                                   rtol=1e-6, atol=1e-9 * np.abs(Sa).max())


def test_pipeline_is_the_model_on_transformed_features():
    X, y, Xte, yte = load("diabetes_pos")
    X, Xte = X * 3.0 + 1.0, Xte * 3.0 + 1.0  # for the scaler to undo
    pipe = make_pipeline(StandardScaler(), TweedieRegressor(power=1.5, alpha=1e-2,
                                                            **_GLM)).fit(X, y)
    scaler, model = pipe[0], pipe[-1]
    ours = InfluenceEstimator(pipe, estimate="newton").fit(X, y)
    ref = InfluenceEstimator(model, estimate="newton").fit(scaler.transform(X), y)
    np.testing.assert_allclose(ours.score_influence(Xte, yte),
                               ref.score_influence(scaler.transform(Xte), yte),
                               rtol=1e-12)
    np.testing.assert_allclose(ours.predict(Xte), pipe.predict(Xte))


def test_newton_is_exact_for_mean_form_least_squares_without_penalty():
    # Leaving a row out re-normalises the others, which moves no minimiser
    # without a penalty: the Newton step is then the exact refit.
    Xtr, ytr, Xte, yte = load("diabetes_std")
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(ytr))
    model = TweedieRegressor(power=0, alpha=0.0, **_GLM).fit(Xtr, ytr,
                                                             sample_weight=sw)
    rows = np.arange(0, 400, 40)
    S = InfluenceEstimator(model, estimate="newton").fit(
        Xtr, ytr, sample_weight=sw).score_influence(Xte, yte)[:, rows]
    actual = loo_influence(model, Xtr, ytr, Xte, yte, rows, sample_weight=sw)
    np.testing.assert_allclose(S, actual, rtol=1e-7, atol=1e-9 * np.abs(actual).max())


def test_group_newton_follows_group_refits():
    case = next(c for c in CASES if c[0] == "Poisson-sw-lbfgs")
    model, (Xtr, ytr, Xte, yte), sw = fitted(case)
    groups = np.random.default_rng(0).integers(0, 12, len(ytr))
    est = InfluenceEstimator(model, estimate="newton").fit(Xtr, ytr, sample_weight=sw)
    predicted = est.group_influence(Xte, yte, groups, n_steps=2)
    actual = loo_influence(model, Xtr, ytr, Xte, yte, groups=groups, sample_weight=sw)
    np.testing.assert_allclose(predicted, actual, rtol=1e-4,
                               atol=1e-5 * np.abs(actual).max())


def test_targets_outside_the_deviance_domain_are_refused():
    Xtr, ytr, Xte, yte = load("diabetes_pos")
    est = InfluenceEstimator(PoissonRegressor()).fit(Xtr, ytr)
    with pytest.raises(ValueError, match=r"y must be non-negative for the poisson "
                                         r"deviance; got min\(y\) = -1"):
        est.score_influence(Xte, -np.ones_like(yte))
    gamma = InfluenceEstimator(TweedieRegressor(power=2.5)).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="y must be positive"):
        gamma.score_influence(Xte, np.zeros_like(yte))
