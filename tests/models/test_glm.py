"""Analytic GLM derivatives against finite differences and scikit-learn."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from skinfluence import InfluenceEstimator

from .._cases import CASES, fitted


def _setup(case):
    model, (Xtr, ytr, Xte, yte), sw = fitted(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        inf = InfluenceEstimator(model).fit(Xtr, ytr, sample_weight=sw)
    return inf, inf._adapter, inf._Z, inf._y, inf._s


def _five_point(f, h):
    return (-f(2 * h) + 8 * f(h) - 8 * f(-h) + f(-2 * h)) / (12 * h)


IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_objective_gradient_matches_finite_differences(case):
    inf, a, Z, y, s = _setup(case)
    rng = np.random.default_rng(0)
    grad = a.objective_gradient(Z, y, s)
    for _ in range(3):
        v = rng.standard_normal(a.n_params)
        v /= np.linalg.norm(v)
        fd = _five_point(
            lambda h, v=v: a.with_theta(a.theta + h * v).objective_value(Z, y, s),
            1e-4,
        )
        scale = np.abs(s).sum() + 1.0
        np.testing.assert_allclose(grad @ v, fd, rtol=1e-5, atol=1e-7 * scale)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hessian_matches_finite_differences_of_gradient(case):
    inf, a, Z, y, s = _setup(case)
    rng = np.random.default_rng(1)
    _, hess = a.pointwise_grad_hess(y, a.raw_prediction(Z))
    H = a.hessian(Z, s, hess)
    v = rng.standard_normal(a.n_params)
    v /= np.linalg.norm(v)
    fd = _five_point(
        lambda h: a.with_theta(a.theta + h * v).objective_gradient(Z, y, s), 1e-5
    )
    # The squared hinge has a piecewise-constant second derivative: a step
    # must not cross a kink, which these small steps do not.
    np.testing.assert_allclose(H @ v, fd, rtol=1e-4, atol=1e-6 * np.abs(H).max())
    np.testing.assert_allclose(H, H.T, rtol=1e-12, atol=1e-12 * np.abs(H).max())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_user_gradient_matches_finite_differences(case):
    inf, a, Z, y, s = _setup(case)
    raw = a.raw_prediction(Z)[:50]
    y = y[:50]
    G = a.user_grad(y, raw)
    for k in range(raw.shape[1]):
        e = np.zeros_like(raw)
        e[:, k] = 1.0
        fd = _five_point(lambda h, e=e: a.loss_from_raw(y, raw + h * e), 1e-5)
        np.testing.assert_allclose(G[:, k], fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hvp_equals_hessian_product(case):
    inf, a, Z, y, s = _setup(case)
    _, hess = a.pointwise_grad_hess(y, a.raw_prediction(Z))
    V = np.random.default_rng(2).standard_normal((a.n_params, 3))
    np.testing.assert_allclose(
        a.hvp(Z, s, hess, V), a.hessian(Z, s, hess) @ V, rtol=1e-10, atol=1e-10
    )
    Zs = sp.csr_matrix(Z)
    np.testing.assert_allclose(
        a.hessian(Zs, s, hess), a.hessian(Z, s, hess), rtol=1e-10, atol=1e-10
    )


def test_logistic_gradient_and_hessian_match_linear_model_loss():
    # scikit-learn's private LinearModelLoss is the oracle (test only): it
    # computes the mean-form objective, ours is C * sum_j sw_j * that.
    pytest.importorskip("sklearn.linear_model._linear_loss")
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
    from sklearn.linear_model._linear_loss import LinearModelLoss

    for case in [c for c in CASES if c[0] in ("Logistic-C0.05-sw", "Softmax")]:
        inf, a, Z, y, s = _setup(case)
        model = inf.estimator_
        X = Z[:, :-1]
        K = a.n_outputs
        base = HalfBinomialLoss() if K == 1 else HalfMultinomialLoss(n_classes=K)
        lml = LinearModelLoss(base_loss=base, fit_intercept=True)
        sw = s / model.C
        l2 = 1.0 / (model.C * sw.sum())
        coef = a.theta if K == 1 else a.theta.reshape(K, -1)
        target = y.astype(float)
        _, g = lml.loss_gradient(coef, X, target, sample_weight=sw, l2_reg_strength=l2)
        scale = model.C * sw.sum()
        np.testing.assert_allclose(
            a.objective_gradient(Z, y, s), scale * np.ravel(g), rtol=1e-8, atol=1e-10
        )
        _, hess = a.pointwise_grad_hess(y, a.raw_prediction(Z))
        if K == 1:
            _, hessp = lml.gradient_hessian_product(
                coef, X, target, sample_weight=sw, l2_reg_strength=l2
            )
            v = np.random.default_rng(0).standard_normal(a.n_params)
            np.testing.assert_allclose(
                a.hessian(Z, s, hess) @ v, scale * hessp(v), rtol=1e-8, atol=1e-10
            )
