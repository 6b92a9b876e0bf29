"""What InfluenceEstimator does for torch models (skinfluence.torch.TorchModel).

Same semantics as the GLM path, first order only: with ``J`` the training
objective in sum form (see :mod:`skinfluence.models._torch`) and ``H`` its
Hessian at theta-hat, leaving row j out moves the parameters by about
``H^-1 s_j grad l_j`` (``s_j`` its weight, 1 but for MLPs fitted with
``sample_weight``), so

- ``score[i, j] = grad L_i' H^-1 grad l_j`` ~ ``L_i(theta without j) - L_i(theta)``
  (positive: row j helps test row i);
- ``transform[i, j] = -grad f_i' H^-1 grad l_j`` ~ ``f_i(theta) - f_i(theta
  without j)``;
- ``influence_on_params[j] = H^-1 grad l_j``;
- ``self_influence[j] = grad l_j' H^-1 grad l_j``.

Besides TorchModels and skorch nets, the engine takes scikit-learn's
MLPClassifier and MLPRegressor, through a float64 torch replica of the
fitted network with scikit-learn's own objective
(:mod:`skinfluence.models._mlp`), and a Pipeline ending in any of them (its
earlier steps fixed feature maps, as on the GLM path). For MLPs ``fit``
also checks that the fitted weights are a minimum of that objective
(``stationarity_``), as the GLM path does.

torch is imported only when a torch model is fitted.
"""

import functools
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import _num_samples, check_is_fitted

from ._engine import Engine, fit_clone
from ._scoring import DenseRows
from ._stationarity import STATIONARITY_RATIO, _check_solver
from .models._mlp import (
    check_mlp,
    import_torch_for,
    is_mlp,
    mlp_null_space,
    mlp_theta,
)
from .models._pipeline import split_pipeline
from .solvers import HessianOperator, make_solver, resolve_method
from .utils._array import to_numpy
from .utils._compat import _check_sample_weight
from .utils._threads import one_blas_thread
from .utils._validation import (
    check_features,
    check_targets,
    encode_labels,
    fingerprint,
)

#: Training gradients held whole, computed once per fit, up to this size.
TRAIN_GRAD_BYTES = 2**28
#: Above it, scores of at most this many rows of L (test rows) come from
#: forward-mode passes: one per row of L, against one backward pass and
#: n_params floats per training row.
DIRECTIONAL_MAX_ROWS = 64


def is_torch_model(estimator):
    """Whether ``estimator`` is a TorchModel, a skorch net or a scikit-learn
    MLP, all taken by the torch engine (checked without imports)."""
    from .torch import is_skorch_net

    return is_skorch_net(estimator) or is_mlp(estimator) or (
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
        return fit_torch(est, given, X, y, sample_weight)

    @_one_blas_thread
    def loss_left(self, est, X, y):
        adapter = _check(est)
        X = _features(est, X)
        L = est._solver.solve(adapter.user_grad_rows(X, _targets(
            adapter.model, X, y)).T).T
        return L, None, None, L.shape[0]

    @_one_blas_thread
    def output_left(self, est, X):
        adapter = _check(est)
        X = _features(est, X)
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


def fit_torch(est, given, X, y, sample_weight=None):
    """``InfluenceEstimator.fit`` for a torch model, an MLP or a Pipeline
    ending in one; returns ``est``."""
    if est.estimate == "newton":
        raise ValueError(
            "estimate='newton' applies to GLM families only; torch models take "
            "estimate='influence'."
        )
    if y is None:
        raise ValueError(
            "InfluenceEstimator requires y to be passed, but the target y is None."
        )
    head, last = split_pipeline(given)
    if is_mlp(last):
        import_torch_for(last)  # before any fitting
        check_mlp(last, y)
    elif sample_weight is not None and getattr(last, "_mlp", None) is None:
        raise ValueError(
            "sample_weight is not supported for torch models (how a module was "
            "trained with weights is not known); scikit-learn's MLPClassifier "
            "and MLPRegressor take it.")
    from .models._torch import TorchAdapter  # torch: after the MLP's check

    est._mlp = est._feature_map = est._feature_fingerprint = None
    if head is None and not is_mlp(last):
        model = _fit_module(est, given, X, y)
    else:
        model, X, sample_weight = _fit_estimator(est, given, X, y, sample_weight)
    y = _targets(model, X, y)
    adapter = TorchAdapter(model, X, y, sample_weight=sample_weight)
    if adapter.classes is not None:
        est.classes_ = adapter.classes
    est.n_train_ = adapter.n_train
    est.n_params_ = adapter.n_params
    est.theta_ = adapter.theta.copy()
    est.method_ = resolve_method(est.method, adapter.n_params)
    # Symmetries of an MLP's parameters that its objective cannot see.
    null = None if est._mlp is None else mlp_null_space(est._mlp, X=X)
    solver = _fit_solver(est, adapter, null)
    est._adapter = adapter
    est._solver = solver
    est.solver_info_ = solver.info_  # the solver records its last solve here
    # EK-FAC approximates the Gauss-Newton matrix whatever the model says.
    est.solver_info_["curvature"] = (
        "ggn" if est.method_ == "ekfac" else adapter.curvature)
    if null is not None and est.method_ != "ekfac":
        est.solver_info_["null_space_dim"] = null.shape[1]
    if est._mlp is not None and adapter.curvature == "hessian":
        _check_stationarity(est, adapter, solver, est._mlp)
    return est


def _fit_solver(est, adapter, null):
    """The fitted solver of ``est.method_`` on the adapter's curvature.

    ``null`` (an orthonormal basis, or None) spans the directions the
    objective cannot see: the curvature is made definite there
    (:func:`_with_null_space`).
    """
    if est.method_ == "ekfac":
        from .solvers._ekfac import EKFACSolver

        _check_ekfac(adapter)
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
            # so a valid preconditioner for either curvature (with one decay
            # standing for a non-uniform one: cg certifies the answer).
            params["preconditioner"] = EKFACSolver(damping=est.damping).fit(
                adapter if adapter.uniform_decay else _UniformDecay(adapter))
        ggn = ("the Gauss-Newton matrix, positive semi-definite by "
               "construction")
        hint = ("" if adapter.curvature == "ggn" else
                f", or fit the TorchModel with curvature='ggn' ({ggn})"
                if est._mlp is None else
                f", or pass InfluenceEstimator the MLP's replica with "
                f"curvature='ggn' ({ggn}): TorchModel.from_mlp(mlp, X, y, "
                "curvature='ggn')")
        solver = make_solver(est.method_, damping=est.damping, tol=est.tol,
                             random_state=est.random_state, solver_params=params,
                             hint=hint)
        H = adapter.hessian() if est.method_ == "direct" else (
            adapter.hessian_operator())
        if null is not None:
            H = _with_null_space(H, adapter._tensor(null))
        solver.fit(H, null_space=None)
    return solver


def _fit_module(est, model, X, y):
    """A TorchModel or skorch net, fitted or not: its (fitted) TorchModel."""
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
    if hasattr(model, "n_features_in_"):
        est.n_features_in_ = model.n_features_in_
    est._mlp = getattr(model, "_mlp", None)  # a replica (TorchModel.from_mlp)
    return model


def _fit_estimator(est, given, X, y, sample_weight):
    """An MLP or a Pipeline ending in a torch model, fitted or not.

    Fitted, it is used as is; else a clone is fitted (with
    ``sample_weight`` routed to the last step), as on the GLM path.
    Returns the TorchModel of the last step (the replica of an MLP), the
    training features it sees and the validated sample weights.
    """
    from .torch import TorchModel, is_skorch_net

    X_checked = est._validate_X(X, reset=True)  # bare MLPs; Pipelines: as is
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X_checked)
    try:
        check_is_fitted(given)
        est.estimator_ = given
    except NotFittedError:
        est.estimator_ = fit_clone(given, X, y, sample_weight)
    est._feature_map, model = split_pipeline(est.estimator_)
    if isinstance(est.estimator_, Pipeline):
        for attr in ("n_features_in_", "feature_names_in_"):
            if hasattr(est.estimator_, attr):
                setattr(est, attr, getattr(est.estimator_, attr))
    if est._feature_map is not None:
        est._feature_fingerprint = fingerprint(est._feature_map)
        if est._feature_fingerprint is None:
            warnings.warn(
                "The Pipeline's feature steps cannot be pickled, so a step "
                "refitted after InfluenceEstimator.fit will go undetected.",
                UserWarning, stacklevel=4,
            )
    if is_mlp(model):
        est._mlp = model
    Z = _features(est, X_checked)
    if est._mlp is not None:
        return TorchModel.from_mlp(model, Z, y), Z, sample_weight
    if is_skorch_net(model):
        model = TorchModel.from_skorch(model)  # its net fitted with the Pipeline
    try:
        check_is_fitted(model)
    except NotFittedError:
        model.fit(Z, _targets(model, Z, y))  # records classes_, trains nothing
    return model, Z, sample_weight


def _features(est, X):
    """Rows as the last step's module takes them.

    Through the fitted Pipeline steps, if any; for an MLP (the last step),
    checked as scikit-learn checks them (2-D, finite, its feature count)
    and made dense, the replica's input.
    """
    fmap, mlp = getattr(est, "_feature_map", None), getattr(est, "_mlp", None)
    if fmap is None and mlp is None:
        return X  # a module: X as its forward takes it
    X = est._validate_X(X, reset=False) if fmap is None else fmap.transform(X)
    if mlp is None:
        return X
    X = check_features(X, mlp.n_features_in_, name=type(mlp).__name__)
    return X.toarray() if sp.issparse(X) else X


def _with_null_space(H, N):
    """``H + c N N'``: the curvature made definite along its null directions.

    N (tensor, orthonormal columns) spans directions the objective cannot
    see (:func:`~skinfluence.models._mlp.mlp_null_space`), along which H is
    singular and every training row's gradient is flat. For a right-hand
    side orthogonal to N the solve then returns the pseudo-inverse solution
    on the identifiable subspace, as the direct solver does for a GLM's
    null space, whatever ``c > 0``; c is H's mean eigenvalue (its mean
    diagonal, estimated from two random products for an operator), so the
    conditioning is unchanged. H is a dense tensor or a HessianOperator
    (mini-batch products shifted alike).
    """
    import torch

    if not isinstance(H, HessianOperator):
        c = float(torch.diagonal(H).mean())
        return H + max(c, 1e-300) * (N @ N.T)
    gen = torch.Generator(device=N.device).manual_seed(0)
    V = torch.randn((H.n_params, 2), generator=gen, dtype=N.dtype, device=N.device)
    c = float((V * H.matmat(V)).sum() / (V * V).sum())
    c = c if c > 0 else 1.0
    sample = None if H.sample is None else _NullShiftSample(H.sample, N, c)
    return HessianOperator(H.n_params, _NullShift(H.matmat, N, c), sample=sample,
                           template=H.template)


class _NullShift:
    """``matmat`` of ``H + c N N'``."""

    def __init__(self, matmat, N, c):
        self.matmat, self.N, self.c = matmat, N, c

    def __call__(self, V):
        return self.matmat(V) + self.c * (self.N @ (self.N.T @ V))


class _NullShiftSample:
    """``sample`` of ``H + c N N'``: mini-batch products, shifted."""

    def __init__(self, sample, N, c):
        self.sample, self.N, self.c = sample, N, c

    def __call__(self, rng, batch_size):
        return _NullShift(self.sample(rng, batch_size), self.N, self.c)


def _check_ekfac(adapter):
    """Refuse method='ekfac' where it cannot represent the objective exactly."""
    if not adapter.uniform_decay:
        raise ValueError(
            "method='ekfac' adds the weight decay to its Kronecker-factored "
            "eigenvalues, which represents one decay on every parameter only; "
            "this model's decay differs between parameters (scikit-learn's MLPs "
            "penalise their weights, not their biases). Use method='cg' with "
            "solver_params={'preconditioner': 'ekfac'} (EK-FAC preconditions, cg "
            "certifies the exact answer), or method='direct'."
        )
    if adapter.sw is not None:
        raise ValueError(
            "method='ekfac' builds its factors from unweighted rows, and this "
            "model was fitted with sample_weight. Use method='cg' with "
            "solver_params={'preconditioner': 'ekfac'}, or method='direct'."
        )


class _UniformDecay:
    """An adapter seen with its largest decay on every coordinate.

    For EK-FAC as cg's preconditioner only, which holds one decay: any
    positive definite preconditioner leaves cg's answer exact.
    """

    def __init__(self, adapter):
        self._adapter = adapter
        self.lambda_n = float(adapter.lambda_n.max())

    def __getattr__(self, name):
        return getattr(self._adapter, name)


def _check_stationarity(est, adapter, solver, mlp):
    """Warn when the MLP's weights are far from a minimum of its objective.

    As on the GLM path (:mod:`skinfluence._stationarity`): the Newton step
    to the minimum, ``sqrt(grad J' H^-1 grad J)``, over a typical row's
    influence, ``sqrt(mean_j s_j^2 grad l_j' H^-1 grad l_j)``, sets
    ``stationarity_``; above ``STATIONARITY_RATIO`` a ConvergenceWarning.
    Run on the exact Hessian only (a replica fitted with curvature="ggn"
    is not checked: that metric is not the objective's).
    """
    import torch

    check, n_rows = _check_solver(solver)
    rows = np.sort(np.random.RandomState(0).permutation(adapter.n_train)[:n_rows])
    g = adapter._tensor(adapter.objective_gradient())
    G = adapter.train_grad_rows(torch.as_tensor(rows, device=adapter.device))
    B = torch.cat([g[:, None], G.T], dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the check's accuracy is enough
        quad = to_numpy((B * check.solve(B)).sum(dim=0))
    offset = float(np.sqrt(max(quad[0], 0.0)))
    typical = float(np.sqrt(max(np.mean(quad[1:]), 0.0)))
    est.stationarity_ = ratio = offset / max(typical, 1e-300)
    if ratio > STATIONARITY_RATIO:
        n_iter = getattr(mlp, "n_iter_", None)
        hint = "" if n_iter is None else f"its n_iter_ is {n_iter}; "
        warnings.warn(
            f"{type(mlp).__name__}'s fitted weights are not a minimum of its "
            "training objective on these (X, y, sample_weight): the Newton step "
            f"to the minimum is {ratio:.3g} times a typical row's influence "
            f"(both in the metric of H), from a gradient of norm {offset:.3g} "
            "in H^-1. Influence is taken at the fitted weights, and a model "
            "retrained to convergence moves that far whichever row it leaves "
            "out. The model does not look trained on this data (or with these "
            f"sample weights), or it did not converge ({hint}adam and sgd stop "
            "short of a minimum). Refit it with solver='lbfgs', a tighter tol "
            "or a larger max_iter.",
            ConvergenceWarning,
            stacklevel=5,
        )


def _check(est):
    check_is_fitted(est, "theta_")
    mlp = getattr(est, "_mlp", None)
    current = est._adapter.read_theta() if mlp is None else mlp_theta(mlp)
    if current.shape != est.theta_.shape or not np.array_equal(current, est.theta_):
        raise ValueError(
            "The wrapped module's parameters changed since InfluenceEstimator.fit "
            "(was it retrained?); call fit again."
        )
    fitted = getattr(est, "_feature_fingerprint", None)
    if fitted is not None and fingerprint(est._feature_map) != fitted:
        raise ValueError(
            "The Pipeline's feature steps changed since InfluenceEstimator.fit "
            "(was a step refitted?); call fit again."
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
        return adapter.train_grad_rows(rows)

    return DenseRows(adapter.n_train, grads, item)


def _row_weights(est, X, sample_weight):
    """Weights of rows X taken as training rows: None (all 1), or a tensor."""
    if sample_weight is None:
        return None
    if getattr(est, "_mlp", None) is None:
        raise ValueError("sample_weight is not supported for torch models.")
    return est._adapter._tensor(_check_sample_weight(sample_weight, X))


def influence_on_params_torch(est, X, y, sample_weight=None):
    """``InfluenceEstimator.influence_on_params`` for a torch model."""
    adapter = _check(est)
    X = _features(est, X)
    w = _row_weights(est, X, sample_weight)
    G = adapter.user_grad_rows(X, _targets(adapter.model, X, y))
    if w is not None:
        G.mul_(w[:, None])
    return to_numpy(est._solver.solve(G.T).T)


def self_influence_torch(est, X=None, y=None, sample_weight=None):
    """``InfluenceEstimator.self_influence`` for a torch model."""
    adapter = _check(est)
    if X is None:
        if y is not None:
            raise ValueError("y was given without X; pass both or neither.")
        return np.concatenate([_own(est, G, adapter._w(b), weighted=True)
                               for b, G in adapter.train_grad_chunks()])
    if y is None:
        raise ValueError("self_influence needs y together with X.")
    X = _features(est, X)
    w = _row_weights(est, X, sample_weight)
    return _own(est, adapter.user_grad_rows(X, _targets(adapter.model, X, y)), w)


def _own(est, G, w=None, weighted=False):
    """``s_j g_j' H^-1 g_j`` for the rows of G (a tensor), in NumPy.

    ``G`` holds the rows' gradients ``g_j``, or, ``weighted``, the training
    rows' ``s_j g_j`` (then divided by ``s_j``; a row of weight 0 has none);
    ``w`` their weights ``s_j`` (None: 1).
    """
    import torch

    q = (G * est._solver.solve(G.T).T).sum(dim=1)
    if w is None:
        return to_numpy(q)
    if weighted:
        return to_numpy(torch.where(w > 0, q / torch.where(w > 0, w, 1), 0))
    return to_numpy(q * w)


