"""Ground truth: actual leave-one-out retraining.

These refits are what influence estimates are judged against, so they solve
the model's own objective to tight tolerance, warm-started at the fitted
parameters where the estimator allows it.
"""

import copy
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted

from ._hinge_qp import hinge_refit
from .models import get_adapter, split_pipeline
from .solvers import DirectSolver
from .utils._compat import _check_sample_weight
from .utils._validation import check_features

__all__ = ["loo_influence"]


def loo_influence(
    estimator,
    X_train,
    y_train,
    X_test,
    y_test,
    train_indices,
    *,
    sample_weight=None,
    epsilon=None,
    t=0.1,
    n_jobs=None,
):
    """Actual change of each test loss when training rows are left out.

    Refits the model once per listed training row, without that row (or with
    its weight lowered by ``epsilon``), and measures the test losses against
    one more refit with nothing removed (so that both ends of each difference
    carry the same solver error). Earlier
    Pipeline steps are kept fixed, as :class:`~skinfluence.InfluenceEstimator`
    assumes.

    Parameters
    ----------
    estimator : estimator object
        A fitted supported model or Pipeline ending in one, trained on
        ``(X_train, y_train)``; its parameters are the warm start.
    X_train : {array-like, sparse matrix} of shape (n_train, n_features)
        Training rows, raw.
    y_train : array-like of shape (n_train,)
        Training targets.
    X_test : {array-like, sparse matrix} of shape (n_test, n_features)
        Test rows, raw.
    y_test : array-like of shape (n_test,)
        Test targets.
    train_indices : array-like of int
        Training rows to leave out, one refit each.
    sample_weight : array-like of shape (n_train,), default=None
        Training weights the model was fitted with.
    epsilon : float, default=None
        If given, lower row j's weight by the fraction ``epsilon`` instead of
        removing it, and return the change in test loss divided by
        ``epsilon``: the finite-difference derivative that the first-order
        influence function estimates.
    t : float, default=0.1
        Smooth-hinge temperature used to measure hinge models' test loss.
    n_jobs : int, default=None
        Refits run in parallel through joblib.

    Returns
    -------
    influence : ndarray of shape (n_test, len(train_indices))
        ``L(z_i; θ̂ without row j) − L(z_i; θ̂)`` in the test loss's units,
        the layout of :meth:`InfluenceEstimator.score_influence`.

    Notes
    -----
    Where the estimator's own solver reaches machine precision quickly, it
    refits: Ridge and LinearRegression exactly, binary LogisticRegression
    with ``solver="newton-cholesky"`` (the objective of lbfgs, sag and saga
    too), liblinear's trust-region Newton for ``solver="liblinear"`` and
    LinearSVC, at ``tol=1e-12``. SGD never converges tightly, and
    scikit-learn's multinomial Newton solver is slow, so SGD models and
    multinomial LogisticRegression are refitted by damped Newton's method on
    the same objective, warm-started at θ̂ (the test suite checks that this
    reaches the estimator's own tight fit).
    """
    check_is_fitted(estimator)
    head, model = split_pipeline(estimator)
    Xt = X_train if head is None else head.transform(X_train)
    Xt = check_features(Xt, getattr(model, "n_features_in_", None))
    Xs = X_test if head is None else head.transform(X_test)
    Xs = check_features(Xs, getattr(model, "n_features_in_", None))
    y_train = np.asarray(y_train)
    n_train = Xt.shape[0]
    sw = _check_sample_weight(sample_weight, Xt)
    adapter = get_adapter(
        model, y=y_train, sample_weight=sample_weight, n_train=n_train, t=t
    )
    Zs = adapter.features(Xs)
    ys = adapter.encode_y(y_test)
    train_indices = np.asarray(train_indices, dtype=np.intp).ravel()
    removed = 1.0 if epsilon is None else float(epsilon)

    # The first refit removes nothing: it is the baseline, so that both ends
    # of every difference carry the same solver error.
    if not adapter.smooth:
        thetas = _hinge_refits(adapter, Xt, y_train, sw, train_indices, removed)
    else:
        refit = _refit_newton if _newton_refits(model) else _refit_native
        thetas = Parallel(n_jobs=n_jobs)(
            delayed(refit)(model, adapter, Xt, y_train, sw, j, r)
            for j, r in [(0, 0.0)] + [(j, removed) for j in train_indices]
        )
    losses = np.empty((Zs.shape[0], len(thetas)))
    for col, theta in enumerate(thetas):
        moved = adapter.with_theta(theta)
        losses[:, col] = moved.loss_from_raw(ys, moved.raw_prediction(Zs))
    return (losses[:, 1:] - losses[:, :1]) / removed


def _newton_refits(model):
    """Whether leave-one-out refits use Newton's method on the objective."""
    name = type(model).__name__
    if name.startswith("SGD"):
        return True
    return name == "LogisticRegression" and model.solver != "liblinear" and len(
        model.classes_) > 2


def _weights_without(sw, j, removed):
    w = sw.copy()
    w[j] *= 1.0 - removed
    return w


def _refit_native(model, adapter, X, y, sw, j, removed):
    """Refit the estimator itself, tight and warm-started; return its theta."""
    w = _weights_without(sw, j, removed)
    keep = w > 0
    est = clone(model)
    name = type(model).__name__
    if name == "LogisticRegression" and model.solver == "liblinear":
        est.set_params(tol=1e-12, max_iter=10_000)
    elif name == "LogisticRegression":
        # Same objective as lbfgs, sag and saga; Newton reaches it exactly.
        est.set_params(solver="newton-cholesky", tol=1e-12, max_iter=10_000,
                       warm_start=True)
        est.coef_ = model.coef_.copy()
        est.intercept_ = np.array(model.intercept_, dtype=float, copy=True)
    elif name == "LinearSVC":
        est.set_params(tol=1e-12, max_iter=1_000_000)
    elif name == "Ridge":
        # Closed form on dense data; the iterative sparse solver made tight.
        est.set_params(tol=1e-12, solver="auto" if not sp.issparse(X) else "sparse_cg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[keep], y[keep], sample_weight=w[keep])
    view = copy.copy(adapter)
    view.estimator = est
    return view.read_theta()


def _row_scale(adapter, y_enc, w):
    """Row factors of the objective on rows of weights w, re-balanced."""
    s = adapter.row_scale(y_enc, w)
    if adapter.balanced is not None:
        s = s / adapter.class_weight[y_enc] * adapter.balanced.factors(y_enc, w)[y_enc]
    return s


def _hinge_refits(adapter, X, y, sw, rows, removed):
    """Exact hinge refits: the baseline, then each row's, warm-started."""
    if adapter.n_outputs != 1:
        raise ValueError(
            "loo_influence refits hinge-loss models exactly for binary problems "
            "only; this model has one-vs-rest outputs."
        )
    Z = adapter.features(X)
    y_enc = adapter.encode_y(y)

    def fit(w, a0=None):
        return hinge_refit(adapter, Z, y_enc, _row_scale(adapter, y_enc, w), a0=a0)

    base, a_full = fit(sw)
    thetas = [base]
    for j in rows:
        thetas.append(fit(_weights_without(sw, j, removed), a0=a_full)[0])
    return thetas


def _refit_newton(model, adapter, X, y, sw, j, removed, max_iter=100):
    """Minimise the model's objective without row j by damped Newton steps."""
    w = _weights_without(sw, j, removed)
    Z = adapter.features(X)
    y_enc = adapter.encode_y(y)
    s = _row_scale(adapter, y_enc, w)
    current = adapter
    value = current.objective_value(Z, y_enc, s)
    for _ in range(max_iter):
        raw = current.raw_prediction(Z)
        _, hess = current.pointwise_grad_hess(y_enc, raw)
        grad = current.objective_gradient(Z, y_enc, s)
        solver = DirectSolver(damping=0.0).fit(
            current.hessian(Z, s, hess), null_space=current.null_space()
        )
        step = solver.solve(grad[:, None])[:, 0]
        if np.linalg.norm(step) <= 1e-14 * max(1.0, np.linalg.norm(current.theta)):
            break
        rate = 1.0
        while rate > 1e-8:
            trial = current.with_theta(current.theta - rate * step)
            trial_value = trial.objective_value(Z, y_enc, s)
            # Armijo; near the optimum rounding can hide the decrease.
            if trial_value <= value - 1e-4 * rate * (grad @ step) or rate == 1.0 and (
                    np.linalg.norm(step) < 1e-8 * max(1.0, np.linalg.norm(
                        current.theta))):
                break
            rate *= 0.5
        else:
            break
        current, value = trial, trial_value
    return current.theta
