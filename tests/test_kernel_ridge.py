"""KernelRidge: least squares on the kernel's eigenfeatures, exactly.

Truth: the model's own predictions, closed-form leave-one-out refits (the
Newton estimate must equal them), refits under a lowered weight (the
first-order estimate must be their derivative), sparse and precomputed
kernels, Pipelines.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator
from skinfluence.models import get_adapter
from skinfluence.validation import loo_influence

from ._cases import load

KERNELS = {
    "rbf": dict(kernel="rbf", gamma=0.1, alpha=0.5),
    "linear": dict(kernel="linear", alpha=1.0),
    "poly": dict(kernel="poly", degree=2, alpha=0.1),
    "callable": dict(kernel=lambda a, b: np.exp(-0.05 * np.sum((a - b) ** 2)),
                     alpha=0.5),
}


def _data(n=200):
    Xtr, ytr, Xte, yte = load("diabetes_std")
    return Xtr[:n], ytr[:n], Xte, yte


@pytest.mark.parametrize("name", KERNELS)
def test_eigenfeatures_reproduce_the_predictions(name):
    Xtr, ytr, Xte, _ = _data(80 if name == "callable" else 200)
    model = KernelRidge(**KERNELS[name]).fit(Xtr, ytr)
    a = get_adapter(model, y=ytr, sample_weight=None, n_train=len(ytr))
    for X in (Xtr, Xte):
        np.testing.assert_allclose(a.raw_prediction(a.features(X))[:, 0],
                                   model.predict(X), rtol=1e-9, atol=1e-9)
    # The penalty is the function-space norm: theta' theta = a' K a.
    K = model._get_kernel(Xtr, Xtr)
    alpha = model.dual_coef_
    assert a.theta @ a.theta == pytest.approx(alpha @ K @ alpha, rel=1e-9)


@pytest.mark.parametrize("name", ["rbf", "linear", "poly"])
def test_newton_is_the_exact_leave_one_out_refit(name):
    Xtr, ytr, Xte, yte = _data()
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(ytr))
    model = KernelRidge(**KERNELS[name]).fit(Xtr, ytr, sample_weight=sw)
    rows = np.arange(0, len(ytr), 17)
    est = InfluenceEstimator(model, estimate="newton").fit(Xtr, ytr, sample_weight=sw)
    actual = loo_influence(model, Xtr, ytr, Xte, yte, rows, sample_weight=sw)
    np.testing.assert_allclose(est.score_influence(Xte, yte)[:, rows], actual,
                               rtol=1e-8, atol=1e-10 * np.abs(actual).max())
    # First order: the derivative as a row's weight is lowered.
    first = InfluenceEstimator(model).fit(Xtr, ytr, sample_weight=sw)
    eps = loo_influence(model, Xtr, ytr, Xte, yte, rows, sample_weight=sw,
                        epsilon=1e-6)
    np.testing.assert_allclose(first.score_influence(Xte, yte)[:, rows], eps,
                               rtol=1e-4, atol=1e-5 * np.abs(eps).max())


def test_precomputed_kernel_is_the_same_model():
    Xtr, ytr, Xte, yte = _data()
    rbf = KernelRidge(kernel="rbf", gamma=0.1, alpha=0.5).fit(Xtr, ytr)
    pre = KernelRidge(kernel="precomputed", alpha=0.5).fit(
        rbf_kernel(Xtr, gamma=0.1), ytr)
    S = InfluenceEstimator(rbf).fit(Xtr, ytr).score_influence(Xte, yte)
    est = InfluenceEstimator(pre).fit(rbf_kernel(Xtr, gamma=0.1), ytr)
    S_pre = est.score_influence(rbf_kernel(Xte, Xtr, gamma=0.1), yte)
    np.testing.assert_allclose(S_pre, S, rtol=1e-7, atol=1e-10 * np.abs(S).max())


def test_dense_and_sparse_agree():
    Xtr, ytr, Xte, yte = _data()
    Xtr, Xte = np.maximum(Xtr, 0.0), np.maximum(Xte, 0.0)
    S = InfluenceEstimator(KernelRidge(kernel="rbf", gamma=0.1), estimate="newton").fit(
        Xtr, ytr).score_influence(Xte, yte)
    S_sp = InfluenceEstimator(KernelRidge(kernel="rbf", gamma=0.1),
                              estimate="newton").fit(
        sp.csr_matrix(Xtr), ytr).score_influence(sp.csr_matrix(Xte), yte)
    np.testing.assert_allclose(S_sp, S, rtol=1e-8, atol=1e-11 * np.abs(S).max())


def test_pipeline_is_the_model_on_transformed_features():
    X, y, Xte, yte = _data()
    X, Xte = 3.0 * X - 1.0, 3.0 * Xte - 1.0
    pipe = make_pipeline(StandardScaler(), KernelRidge(kernel="rbf", gamma=0.1))
    pipe.fit(X, y)
    ours = InfluenceEstimator(pipe).fit(X, y).score_influence(Xte, yte)
    ref = InfluenceEstimator(pipe[-1]).fit(pipe[0].transform(X), y).score_influence(
        pipe[0].transform(Xte), yte)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_multi_target_is_refused():
    X, y, _, _ = _data()
    model = KernelRidge().fit(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="fitted on 2 targets"):
        get_adapter(model, y=y, sample_weight=None, n_train=len(y))
