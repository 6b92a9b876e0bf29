"""loo_influence against scikit-learn's own refits, and its certificate.

Truth is the estimator refitted by scikit-learn on the data without row j
(LogisticRegression with solver="newton-cholesky" at tol=1e-12, Ridge in
closed form); the change of each test loss is measured against the same
estimator fitted on all rows.
"""

import numpy as np
import pytest
from sklearn import config_context
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

import skinfluence.validation as validation
from skinfluence import InfluenceEstimator
from skinfluence.models import get_adapter
from skinfluence.validation import loo_influence

ROWS = [0, 3, 17]


def _cancer(n_train=150):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:n_train], order[n_train:n_train + 20]
    return X[train], y[train], X[test], y[test]


def _digits(n_classes=4, n_train=200):
    X, y = load_digits(return_X_y=True)
    keep = y < n_classes
    X, y = X[keep] / 16.0, y[keep]  # some pixels are 0 on every row
    return X[:n_train], y[:n_train], X[n_train:n_train + 20], y[n_train:n_train + 20]


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X[:300], y[:300], X[300:320], y[300:320]


def _weights(n, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, n)


def _test_loss(model, X, y):
    """Per-row test loss in the units of loo_influence."""
    if hasattr(model, "predict_log_proba"):
        return -model.predict_log_proba(X)[np.arange(len(y)),
                                           np.searchsorted(model.classes_, y)]
    return (model.predict(X) - y) ** 2


def _sklearn_loo(make, data, rows, sw=None):
    """The estimator fitted on all rows, and scikit-learn's own LOO changes."""
    Xtr, ytr, Xte, yte = data
    full = make().fit(Xtr, ytr, sample_weight=sw)
    base = _test_loss(full, Xte, yte)
    changes = []
    for j in rows:
        keep = np.arange(len(ytr)) != j
        refit = make().fit(Xtr[keep], ytr[keep],
                           sample_weight=None if sw is None else sw[keep])
        changes.append(_test_loss(refit, Xte, yte) - base)
    return full, np.column_stack(changes)


def _tight_logistic(**params):
    return lambda: LogisticRegression(solver="newton-cholesky", tol=1e-12,
                                      max_iter=1000, **params)


CASES = {
    "binary": (_tight_logistic(C=0.5), _cancer, False),
    "binary-sw": (_tight_logistic(C=0.5), _cancer, True),
    "binary-balanced": (_tight_logistic(C=0.5, class_weight="balanced"), _cancer,
                        False),
    "multinomial": (_tight_logistic(C=1.0), _digits, False),
    "multinomial-sw-balanced": (
        _tight_logistic(C=1.0, class_weight="balanced"),
        lambda: _digits(3, 150), True),
    "ridge": (lambda: Ridge(alpha=1e-2, solver="cholesky"), _diabetes, False),
    "ridge-sw": (lambda: Ridge(alpha=1e-2, solver="cholesky"), _diabetes, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_equals_sklearn_refits(name):
    make, load, weighted = CASES[name]
    data = load()
    sw = _weights(len(data[1])) if weighted else None
    model, truth = _sklearn_loo(make, data, ROWS, sw)
    ours, info = loo_influence(model, *data, ROWS, sample_weight=sw,
                               return_info=True)
    assert np.abs(truth).max() > 1e-6  # the rows do move the test losses
    np.testing.assert_allclose(ours, truth, rtol=0,
                               atol=1e-8 * np.abs(truth).max())
    assert info["certified"]
    assert set(info["method"]) == {"chord"}


def test_slow_contraction_takes_newton_steps():
    # Balanced weights of a class of four: leaving one out re-weights the
    # other three by 4/3, which the frozen Hessian does not see.
    Xtr, ytr, Xte, yte = _cancer(549)
    idx = np.r_[np.flatnonzero(ytr == 0)[:4], np.flatnonzero(ytr == 1)[:120]]
    data = (Xtr[idx], ytr[idx], Xte, yte)
    rows = [0, 1, 3, 10]
    model, truth = _sklearn_loo(
        _tight_logistic(C=0.1, class_weight="balanced"), data, rows)
    ours, info = loo_influence(model, *data, rows, return_info=True)
    assert "newton" in info["method"]
    newton = info["method"] == "newton"
    assert np.all(info["n_newton_iter"][newton] > 0)
    assert np.all(info["n_iter"] == info["n_chord_iter"] + info["n_newton_iter"])
    np.testing.assert_allclose(ours, truth, rtol=0,
                               atol=1e-8 * np.abs(truth).max())
    assert info["max_rel_grad_norm"] <= 1e-11


def test_impossible_newton_falls_back_to_the_estimator(monkeypatch):
    # Newton's method is impossible where H_-j is singular (a row alone
    # determines a parameter): simulated here on every slow refit.
    def singular(*args, **kwargs):
        raise ValueError("Hessian is not positive definite")

    monkeypatch.setattr(validation, "_MAX_CHORD_ITER", 1)
    monkeypatch.setattr(validation, "_newton_iterations", singular)
    make, load, _ = CASES["binary"]
    data = load()
    model, truth = _sklearn_loo(make, data, ROWS)
    ours, info = loo_influence(model, *data, ROWS, return_info=True)
    assert set(info["method"]) == {"native"}
    np.testing.assert_allclose(ours, truth, rtol=0, atol=1e-8 * np.abs(truth).max())
    # scikit-learn's own Newton solver stops short of rounding level.
    assert info["max_rel_grad_norm"] < 1e-6


def test_row_fitted_exactly_by_its_own_parameter():
    # Feature 0 is non-zero on row 0 only: least squares fits that row
    # exactly, so leaving it out moves nothing, though without it the
    # coefficient is not identifiable (no chord, no Newton step).
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    X[1:, 0] = 0.0
    y = X @ [1.0, 2.0, -1.0, 0.5] + 0.1 * rng.standard_normal(40)
    Xte = rng.standard_normal((5, 4))
    Xte[:, 0] = 0.0
    data = (X, y, Xte, Xte @ [1.0, 2.0, -1.0, 0.5])
    model, truth = _sklearn_loo(LinearRegression, data, [0, 5])
    ours, info = loo_influence(model, *data, [0, 5], return_info=True)
    assert list(info["method"]) == ["chord", "chord"]
    assert list(info["n_iter"]) == [0, 1]
    np.testing.assert_allclose(ours, truth, rtol=0, atol=1e-8 * np.abs(truth).max())
    assert np.abs(ours[:, 0]).max() < 1e-12


def test_singular_hessian_refits_one_at_a_time():
    # A duplicated column: H is singular at the fit, no chord is possible.
    Xtr, ytr, Xte, yte = _diabetes()
    dup = lambda X: np.column_stack([X, X[:, :1]])  # noqa: E731
    data = (dup(Xtr), ytr, dup(Xte), yte)
    model, truth = _sklearn_loo(LinearRegression, data, ROWS)
    ours, info = loo_influence(model, *data, ROWS, return_info=True)
    assert set(info["method"]) == {"native"}
    np.testing.assert_allclose(ours, truth, rtol=0,
                               atol=1e-8 * np.abs(truth).max())
    assert info["certified"]


def test_certificate_is_at_rounding_level():
    from sklearn._loss.loss import HalfMultinomialLoss
    from sklearn.linear_model._linear_loss import LinearModelLoss

    make, load, _ = CASES["multinomial"]
    Xtr, ytr, Xte, yte = load()
    model = make().fit(Xtr, ytr)
    rows = np.arange(8)
    _, info = loo_influence(model, Xtr, ytr, Xte, yte, rows, return_info=True)
    for key in ("method", "n_iter", "n_chord_iter", "n_newton_iter", "grad_norm",
                "rel_grad_norm"):
        assert info[key].shape == (len(rows),), key
    assert np.all(info["n_iter"] >= 1) and set(info["method"]) == {"chord"}
    np.testing.assert_allclose(info["rel_grad_norm"],
                               info["grad_norm"] / info["grad_scale"])
    assert info["max_grad_norm"] == max(info["grad_norm"].max(),
                                        info["baseline"]["grad_norm"])
    assert info["certified"] and info["max_rel_grad_norm"] <= 1e-12

    # Independently, with scikit-learn's LinearModelLoss as the oracle: the
    # gradient of each refit's objective (its mean form times C n) at the
    # refit's parameters.
    adapter = get_adapter(model, y=ytr, sample_weight=None, n_train=len(ytr))
    loo = validation._LeaveOneOut(model, adapter, Xtr, ytr, np.ones(len(ytr)), 1.0)
    assert loo.prepare()
    Theta = loo.expand(loo.chord(rows)[0])
    oracle = LinearModelLoss(base_loss=HalfMultinomialLoss(n_classes=4),
                             fit_intercept=True)
    for j, theta in zip(rows, Theta):
        keep = np.arange(len(ytr)) != j
        n = keep.sum()
        for coef, small in [(theta, True), (loo.expand(loo.theta_star[None])[0],
                                             False)]:
            grad = oracle.gradient(coef.reshape(4, -1), Xtr[keep],
                                   ytr[keep].astype(float),
                                   l2_reg_strength=1.0 / (model.C * n))
            norm = model.C * n * np.linalg.norm(grad)
            if small:  # at rounding level
                assert norm <= 1e-12 * info["grad_scale"], (j, norm)
            else:  # where the refit started: far from it
                assert norm >= 1e-6 * info["grad_scale"], (j, norm)


def test_unconverged_refit_is_reported(monkeypatch):
    make, load, _ = CASES["binary"]
    data = load()
    model = make().fit(data[0], data[1])
    # One chord step, then no Newton step at all: not at rounding level.
    monkeypatch.setattr(validation, "_MAX_CHORD_ITER", 1)
    monkeypatch.setattr(validation, "_MAX_NEWTON_ITER", 0)
    with pytest.warns(ConvergenceWarning, match="did not reach rounding level.*"
                      "gradient norm of"):
        _, info = loo_influence(model, *data, ROWS, return_info=True)
    assert not info["certified"]
    assert info["max_rel_grad_norm"] > validation._RTOL_CERTIFIED
    assert "newton" in info["method"]


def test_epsilon_agrees_with_the_one_at_a_time_refits():
    # The former path: one damped-Newton (multinomial) or closed-form
    # (Ridge) refit per row, the baseline refitted the same way.
    eps = 1e-3
    for make, load, refit in [(CASES["multinomial"][0], _digits,
                               validation._refit_newton),
                              (CASES["ridge"][0], _diabetes,
                               validation._refit_native)]:
        Xtr, ytr, Xte, yte = load()
        sw = _weights(len(ytr))
        model = make().fit(Xtr, ytr, sample_weight=sw)
        adapter = get_adapter(model, y=ytr, sample_weight=sw, n_train=len(ytr))
        thetas = [refit(model, adapter, Xtr, ytr, sw, j, r)
                  for j, r in [(0, 0.0)] + [(j, eps) for j in ROWS]]
        ys = adapter.encode_y(yte)
        losses = np.column_stack([
            adapter.with_theta(t).loss_from_raw(
                ys, adapter.with_theta(t).raw_prediction(adapter.features(Xte)))
            for t in thetas])
        old = (losses[:, 1:] - losses[:, :1]) / eps
        new = loo_influence(model, Xtr, ytr, Xte, yte, ROWS, sample_weight=sw,
                            epsilon=eps)
        np.testing.assert_allclose(new, old, rtol=0, atol=1e-7 * np.abs(old).max())


@pytest.mark.parametrize("name", ["binary-sw", "multinomial", "ridge"])
@pytest.mark.parametrize("dense_inverse", [True, False])
def test_first_chord_iterate_is_the_newton_estimate(name, dense_inverse):
    make, load, weighted = CASES[name]
    Xtr, ytr, _, _ = load()
    sw = _weights(len(ytr)) if weighted else np.ones(len(ytr))
    model = make().fit(Xtr, ytr, sample_weight=sw)
    adapter = get_adapter(model, y=ytr, sample_weight=sw, n_train=len(ytr))
    loo = validation._LeaveOneOut(model, adapter, Xtr, ytr, sw, 1.0)
    loo.n_rhs = np.inf if dense_inverse else 0  # H^-1 formed, or solves
    assert loo.prepare()
    assert (loo.Hinv is not None) == dense_inverse
    rows = np.array(ROWS)
    Theta = loo.chord(rows, max_iter=1)[0]
    ours = loo.expand(Theta) - loo.expand(loo.theta_star[None])
    newton = InfluenceEstimator(model, estimate="newton").fit(
        Xtr, ytr, sample_weight=sw).influence_on_params(
        Xtr[rows], ytr[rows], sample_weight=sw[rows])
    np.testing.assert_allclose(ours, newton, rtol=1e-10,
                               atol=1e-10 * np.abs(newton).max())


def test_batches_threads_and_progress_do_not_change_results(capsys):
    make, load, _ = CASES["multinomial"]
    data = load()
    model = make().fit(data[0], data[1])
    rows = np.arange(0, 60, 2)
    ref = loo_influence(model, *data, rows)
    with config_context(working_memory=1):  # MiB: batches of about 20
        batched = loo_influence(model, *data, rows, n_jobs=2, verbose=1)
    np.testing.assert_allclose(batched, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    pytest.importorskip("tqdm")
    assert "Refitting without 30 training rows" in capsys.readouterr().err


def test_single_precision_steps_do_not_change_results(monkeypatch):
    # Steps after the first may apply H^-1 in single precision: the fixed
    # point is the double-precision gradient's, so results agree to the
    # refits' own accuracy.
    make, load, _ = CASES["multinomial"]
    data = load()
    model = make().fit(data[0], data[1])
    rows = np.arange(40)  # enough refits to form H^-1
    adapter = get_adapter(model, y=data[1], sample_weight=None, n_train=len(data[1]))
    loo = validation._LeaveOneOut(model, adapter, data[0], data[1],
                                  np.ones(len(data[1])), 1.0)
    loo.n_rhs = len(rows)
    assert loo.prepare() and loo.Hinv32 is not None
    single, info = loo_influence(model, *data, rows, return_info=True)
    monkeypatch.setattr(validation, "_FLOAT32_MAX_COND", 0.0)
    double, info64 = loo_influence(model, *data, rows, return_info=True)
    np.testing.assert_allclose(single, double, rtol=0,
                               atol=1e-10 * np.abs(double).max())
    assert info["certified"] and info64["certified"]
    # The single-precision error is below the chord's own contraction.
    assert info["n_iter"].sum() <= info64["n_iter"].sum() + 2


def test_pipeline_and_empty_rows():
    from sklearn.pipeline import make_pipeline

    Xtr, ytr, Xte, yte = _cancer()
    pipe = make_pipeline(StandardScaler(), _tight_logistic(C=0.5)()).fit(Xtr, ytr)
    last = _tight_logistic(C=0.5)().fit(pipe[0].transform(Xtr), ytr)
    np.testing.assert_allclose(
        loo_influence(pipe, Xtr, ytr, Xte, yte, ROWS),
        loo_influence(last, pipe[0].transform(Xtr), ytr, pipe[0].transform(Xte),
                      yte, ROWS), rtol=1e-9, atol=1e-12)
    I, info = loo_influence(pipe, Xtr, ytr, Xte, yte, [], return_info=True)
    assert I.shape == (len(yte), 0) and info["n_iter"].shape == (0,)


def test_tiny_epsilon_on_a_well_fitted_row_still_moves():
    # Found by hypothesis: lowering a well-fitted row's weight by 1e-5 moves
    # the gradient by less than the stopping level; the refit must still
    # take its Newton step, or the finite difference reads zero.
    rng = np.random.default_rng(23080)
    X = rng.standard_normal((81, 6)) * rng.uniform(0.5, 3.0, 6)
    y = (X @ rng.standard_normal(6) + rng.standard_normal(81) > 0).astype(int)
    Xtr, ytr, Xte, yte = X[:76], y[:76], X[76:], y[76:]
    model = LogisticRegression(C=4.0, solver="newton-cholesky", tol=1e-12).fit(
        Xtr, ytr)
    rows = np.arange(0, 76, 9)
    down = loo_influence(model, Xtr, ytr, Xte, yte, rows, epsilon=1e-5)
    up = loo_influence(model, Xtr, ytr, Xte, yte, rows, epsilon=-1e-5)
    derivative = (down + up) / 2
    expected = InfluenceEstimator(model).fit(Xtr, ytr).score_influence(Xte, yte)
    np.testing.assert_allclose(derivative, expected[:, rows], rtol=1e-4,
                               atol=1e-6 * np.abs(expected).max())
