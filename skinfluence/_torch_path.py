"""What InfluenceEstimator does for torch models (skinfluence.torch.TorchModel).

Same semantics as the GLM path, first order only: with ``J`` the training
objective in sum form (see :mod:`skinfluence.models._torch`) and ``H`` its
Hessian at theta-hat, leaving row j out moves the parameters by about
``H^-1 grad l_j``, so

- ``score[i, j] = grad L_i' H^-1 grad l_j`` ~ ``L_i(theta without j) - L_i(theta)``
  (positive: row j helps test row i);
- ``transform[i, j] = -grad f_i' H^-1 grad l_j`` ~ ``f_i(theta) - f_i(theta
  without j)``;
- ``influence_on_params[j] = H^-1 grad l_j``;
- ``self_influence[j] = grad l_j' H^-1 grad l_j``.

torch is imported only when a torch model is fitted.
"""

import functools

import numpy as np
from sklearn.utils.validation import _num_samples, check_is_fitted

from ._engine import Engine
from ._scoring import DenseRows
from .solvers import make_solver, resolve_method
from .utils._array import to_numpy
from .utils._threads import one_blas_thread
from .utils._validation import check_targets, encode_labels

#: Training gradients held whole, computed once per fit, up to this size.
TRAIN_GRAD_BYTES = 2**28
#: Above it, scores of at most this many rows of L (test rows) come from
#: forward-mode passes: one per row of L, against one backward pass and
#: n_params floats per training row.
DIRECTIONAL_MAX_ROWS = 64


def is_torch_model(estimator):
    """Whether ``estimator`` is a TorchModel or a skorch net (without imports)."""
    from .torch import is_skorch_net

    return is_skorch_net(estimator) or (
        type(estimator).__name__ == "TorchModel"
        and type(estimator).__module__ == "skinfluence.torch")


def _one_blas_thread(method):
    """Run ``method`` with NumPy's BLAS on one thread.

    The solvers' NumPy algebra between torch's products is small, and
    OpenBLAS threads left spinning after it slow torch's own threads:
    measured on two cores, block CG on a digits MLP 7.2 s -> 1.8 s.
    """
    @functools.wraps(method)
    def run(*args, **kwargs):
        with one_blas_thread:
            return method(*args, **kwargs)
    return run


class TorchEngine(Engine):
    """torch.func gradients and curvature products of a trained module."""

    family = "torch"

    @_one_blas_thread
    def fit(self, est, given, X, y, sample_weight):
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported for torch models.")
        return fit_torch(est, given, X, y)

    @_one_blas_thread
    def loss_left(self, est, X, y):
        adapter = _check(est)
        L = est._solver.solve(adapter.user_grad_rows(X, _targets(
            adapter.model, X, y)).T).T
        return L, None, None, L.shape[0]

    @_one_blas_thread
    def output_left(self, est, X):
        adapter = _check(est)
        return est._solver.solve(adapter.output_grad_rows(X).T).T, None

    @_one_blas_thread
    def train_rows(self, est, n_left):
        return _train_rows(est._adapter, n_left)

    @_one_blas_thread
    def param_shifts(self, est, X, y, sample_weight):
        return influence_on_params_torch(est, X, y, sample_weight)

    @_one_blas_thread
    def self_influence(self, est, X, y, sample_weight):
        return self_influence_torch(est, X, y, sample_weight)


def fit_torch(est, model, X, y):
    """``InfluenceEstimator.fit`` for a TorchModel; returns ``est``."""
    from sklearn.exceptions import NotFittedError

    from .models._torch import TorchAdapter

    if est.estimate == "newton":
        raise ValueError(
            "estimate='newton' applies to GLM families only; torch models take "
            "estimate='influence'."
        )
    if y is None:
        raise ValueError(
            "InfluenceEstimator requires y to be passed, but the target y is None."
        )
    from .torch import TorchModel, is_skorch_net

    est.estimator_ = model  # predictions are delegated to it
    if is_skorch_net(model):
        if not (getattr(model, "initialized_", False) and len(model.history)):
            model.fit(X, y)  # an unfitted net is trained, like any estimator
        model = TorchModel.from_skorch(model)
    y = _targets(model, X, y)
    try:
        check_is_fitted(model)
    except NotFittedError:
        model.fit(X, y)  # records classes_; a TorchModel is never trained here
        y = _targets(model, X, y)  # against the classes_ just recorded
    if hasattr(model, "n_features_in_"):
        est.n_features_in_ = model.n_features_in_
    adapter = TorchAdapter(model, X, y)
    if adapter.classes is not None:
        est.classes_ = adapter.classes
    est.n_train_ = adapter.n_train
    est.n_params_ = adapter.n_params
    est.theta_ = adapter.theta.copy()
    est.method_ = resolve_method(est.method, adapter.n_params)
    if est.method_ == "ekfac":
        from .solvers._ekfac import EKFACSolver

        params = dict(est.solver_params or {})
        allowed = {"batch_size", "expectation"}
        unknown = set(params) - allowed
        if unknown:
            raise ValueError(
                f"solver_params {sorted(unknown)} do not apply to method='ekfac'; "
                f"it takes {sorted(allowed)}."
            )
        if params.get("expectation") == "mc":
            params["random_state"] = est.random_state
        solver = EKFACSolver(damping=est.damping, **params).fit(adapter)
    else:
        params = dict(est.solver_params or {})
        if est.method_ == "cg" and params.get("preconditioner") == "ekfac":
            from .solvers._ekfac import EKFACSolver

            # EK-FAC's inverse of the Gauss-Newton matrix (+ damping): SPD,
            # so a valid preconditioner for either curvature.
            params["preconditioner"] = EKFACSolver(damping=est.damping).fit(adapter)
        hint = ("" if adapter.curvature == "ggn" else
                ", or fit the TorchModel with curvature='ggn' (the Gauss-Newton "
                "matrix, positive semi-definite by construction)")
        solver = make_solver(est.method_, damping=est.damping, tol=est.tol,
                             random_state=est.random_state, solver_params=params,
                             hint=hint)
        H = adapter.hessian() if est.method_ == "direct" else (
            adapter.hessian_operator())
        solver.fit(H, null_space=None)
    est._adapter = adapter
    est._solver = solver
    est.solver_info_ = solver.info_  # the solver records its last solve here
    # EK-FAC approximates the Gauss-Newton matrix whatever the model says.
    est.solver_info_["curvature"] = (
        "ggn" if est.method_ == "ekfac" else adapter.curvature)
    return est


def _check(est):
    check_is_fitted(est, "theta_")
    current = est._adapter.read_theta()
    if current.shape != est.theta_.shape or not np.array_equal(current, est.theta_):
        raise ValueError(
            "The wrapped module's parameters changed since InfluenceEstimator.fit "
            "(was it retrained?); call fit again."
        )
    return est._adapter


def _targets(model, X, y):
    """y as the TorchModel's loss takes it: labels of its classes_, or floats."""
    classifier = model._is_classifier()
    y = check_targets(y, _num_samples(X), classifier=classifier,
                      multi_output=not classifier)
    if classifier and hasattr(model, "classes_"):
        encode_labels(y, model.classes_)
    return y


class DirectionalRows:
    """Training rows scored by forward mode, their gradients never formed.

    ``contract(L, rows)`` is ``L @ G[rows].T`` from one Jacobian-vector
    product of the rows' losses per row of L
    (:meth:`~skinfluence.models._torch.TorchAdapter.loss_directional`): for
    wide networks whose per-row gradients do not fit in memory, a few test
    rows cost a few forward-mode passes over the training rows, not a
    backward pass per training row and its n_params floats.
    """

    def __init__(self, adapter):
        self.adapter, self.n = adapter, adapter.n_train

    def row_bytes(self, n_params):
        return 0  # the adapter batches its passes by rows

    def contract(self, L, rows):
        return self.adapter.loss_directional(L, rows)


def _train_rows(adapter, n_left):
    """The training rows' gradients for the shared scoring module, tensors on
    the module's device.

    All of them, computed once and cached by the adapter where they fit its
    budget; otherwise, for a few rows of L (``DIRECTIONAL_MAX_ROWS``),
    forward-mode contractions; else each chunk of rows' gradients.
    """
    item = adapter.theta_t.element_size()
    if item * adapter.n_train * adapter.n_params <= TRAIN_GRAD_BYTES:
        _, G = next(adapter.train_grad_chunks(max_bytes=TRAIN_GRAD_BYTES))
        return DenseRows(adapter.n_train, G.__getitem__, item)
    if n_left <= DIRECTIONAL_MAX_ROWS:
        return DirectionalRows(adapter)

    def grads(rows):
        return adapter._grad_rows(adapter._loss_one, adapter.X[rows], adapter.y[rows])

    return DenseRows(adapter.n_train, grads, item)


def influence_on_params_torch(est, X, y, sample_weight=None):
    """``InfluenceEstimator.influence_on_params`` for a TorchModel."""
    if sample_weight is not None:
        raise ValueError("sample_weight is not supported for torch models.")
    adapter = _check(est)
    y = _targets(adapter.model, X, y)
    return to_numpy(est._solver.solve(adapter.user_grad_rows(X, y).T).T)


def self_influence_torch(est, X=None, y=None, sample_weight=None):
    """``InfluenceEstimator.self_influence`` for a TorchModel."""
    if sample_weight is not None:
        raise ValueError("sample_weight is not supported for torch models.")
    adapter = _check(est)
    if X is None:
        if y is not None:
            raise ValueError("y was given without X; pass both or neither.")
        return np.concatenate([_own(est, G) for _, G in adapter.train_grad_chunks()])
    if y is None:
        raise ValueError("self_influence needs y together with X.")
    return _own(est, adapter.user_grad_rows(X, _targets(adapter.model, X, y)))


def _own(est, G):
    """``g_j' H^-1 g_j`` for the rows of G (a tensor), in NumPy."""
    return to_numpy((G * est._solver.solve(G.T).T).sum(dim=1))


