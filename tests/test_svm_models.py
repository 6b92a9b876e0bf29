"""Linear SVMs beyond LinearSVC: SVC(kernel="linear"), LinearSVR, SVR.

The shared cases (``tests/_cases.py``) hold the smooth-hinge influence to
the derivative of the exact hinge solution and the squared loss to refits;
here: the losses, the exact solver against libsvm and liblinear, the
stationarity check through subgradients, sparse input, Pipelines and what
is refused.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, LinearSVR

from skinfluence import InfluenceEstimator
from skinfluence._hinge_qp import hinge_refit
from skinfluence.models import get_adapter
from skinfluence.models._glm import EpsilonInsensitiveLoss

from ._cases import load


def test_smooth_epsilon_insensitive_loss_tends_to_the_loss():
    r = np.linspace(-2.0, 2.0, 401)[:, None]
    y, raw = r[:, 0] + 1.0, np.ones_like(r)  # residual y - raw = r
    exact = np.maximum(0.0, np.abs(r[:, 0]) - 0.3)
    for t in (1e-1, 1e-2, 1e-3):
        smooth = EpsilonInsensitiveLoss(0.3, "smooth", t=t).user_loss(y, raw)
        # Two softplus terms: at most 2 t log 2 above the loss.
        assert np.all(smooth >= exact - 1e-12)
        assert np.max(smooth - exact) <= 2 * t * np.log(2)
    squared = EpsilonInsensitiveLoss(0.3, "squared").user_loss(y, raw)
    np.testing.assert_allclose(squared, exact**2)


@pytest.mark.parametrize("make, weighted", [
    (lambda: SVR(kernel="linear", epsilon=0.1, C=0.1, tol=1e-12), True),
    # liblinear's dual descent stalls 1e-3 short with sample weights.
    (lambda: LinearSVR(epsilon=0.1, C=0.1, tol=1e-12, max_iter=1_000_000,
                       random_state=0), False),
], ids=["SVR-sw", "LinearSVR"])
def test_exact_solver_reproduces_the_fit(make, weighted):
    Xtr, ytr, _, _ = load("cancer_reg")
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(ytr)) if weighted else (
        np.ones(len(ytr)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make().fit(Xtr, ytr, sample_weight=sw)
    a = get_adapter(model, y=ytr, sample_weight=sw, n_train=len(ytr), t=1e-3)
    y_enc = a.encode_y(ytr)
    Z, s = a.features(Xtr), a.row_scale(y_enc, sw)
    theta, _ = hinge_refit(a, Z, y_enc, s)

    def objective(th):  # the exact epsilon-insensitive objective
        r = y_enc - Z @ th
        return s @ np.maximum(0.0, np.abs(r) - model.epsilon) + 0.5 * th @ (
            a.penalty * th)

    # The exact minimum, below the estimator's own (liblinear's dual descent
    # stops short), by a sliver: both minimise the same objective.
    best, theirs = objective(theta), objective(a.theta)
    assert best <= theirs <= best * (1 + 1e-6), (best, theirs)
    np.testing.assert_allclose(theta, a.theta, atol=1e-4 * np.abs(theta).max())
    # And the fit passes the (subgradient) stationarity check, while the
    # same weights read with another C do not.
    est = InfluenceEstimator(model, t=1e-3).fit(Xtr, ytr, sample_weight=sw)
    assert est.stationarity_ < 1e-2, est.stationarity_
    with pytest.warns(ConvergenceWarning, match="not a minimum"):
        InfluenceEstimator(model, t=1e-3).fit(Xtr, ytr, sample_weight=3 * sw)


def test_svc_linear_is_the_hinge_model_with_a_free_intercept():
    Xtr, ytr, Xte, yte = load("cancer")
    model = SVC(kernel="linear", C=0.1, tol=1e-12, class_weight="balanced")
    model.fit(Xtr, ytr)
    a = get_adapter(model, y=ytr, sample_weight=None, n_train=len(ytr), t=1e-3)
    assert a.penalty[-1] == 0.0  # libsvm's intercept is not penalised
    y_enc = a.encode_y(ytr)
    theta, _ = hinge_refit(a, a.features(Xtr), y_enc, a.row_scale(y_enc))
    np.testing.assert_allclose(theta, a.theta, atol=1e-6 * np.abs(theta).max())
    est = InfluenceEstimator(model).fit(Xtr, ytr)
    np.testing.assert_array_equal(est.predict(Xte), model.predict(Xte))


def test_dense_and_sparse_agree():
    Xtr, ytr, Xte, yte = load("cancer_reg")
    Xtr, Xte = np.maximum(Xtr, 0.0), np.maximum(Xte, 0.0)
    dense = SVR(kernel="linear", epsilon=0.1, C=0.1, tol=1e-12).fit(Xtr, ytr)
    sparse = SVR(kernel="linear", epsilon=0.1, C=0.1, tol=1e-12).fit(
        sp.csr_matrix(Xtr), ytr)
    S = InfluenceEstimator(dense).fit(Xtr, ytr).score_influence(Xte, yte)
    S_sp = InfluenceEstimator(sparse).fit(sp.csr_matrix(Xtr), ytr).score_influence(
        sp.csr_matrix(Xte), yte)
    np.testing.assert_allclose(S_sp, S, rtol=1e-5, atol=1e-8 * np.abs(S).max())


def test_pipeline_is_the_model_on_transformed_features():
    X, y, Xte, yte = load("cancer_reg")
    X, Xte = 2.0 * X + 1.0, 2.0 * Xte + 1.0
    pipe = make_pipeline(StandardScaler(), LinearSVR(
        loss="squared_epsilon_insensitive", epsilon=0.1, C=0.1, dual=False,
        tol=1e-12)).fit(X, y)
    ours = InfluenceEstimator(pipe).fit(X, y)
    ref = InfluenceEstimator(pipe[-1]).fit(pipe[0].transform(X), y)
    np.testing.assert_allclose(ours.score_influence(Xte, yte),
                               ref.score_influence(pipe[0].transform(Xte), yte),
                               rtol=1e-12)


@pytest.mark.parametrize("model, match", [
    (SVC(kernel="rbf"), r"SVC\(kernel='rbf'\) is not supported.*KernelRidge"),
    (SVR(kernel="poly"), r"SVR\(kernel='poly'\) is not supported"),
])
def test_other_kernels_are_refused(model, match):
    X, y, _, _ = load("cancer")
    with pytest.raises(ValueError, match=match):
        InfluenceEstimator(model).fit(X, y)


def test_multiclass_svc_is_refused():
    X, y, _, _ = load("diabetes_3")
    model = SVC(kernel="linear").fit(X, y)
    with pytest.raises(ValueError, match="one-vs-one.*OneVsRestClassifier"):
        InfluenceEstimator(model).fit(X, y)
