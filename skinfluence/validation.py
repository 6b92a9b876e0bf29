"""Ground truth: actual leave-one-out retraining.

These refits are what influence estimates are judged against, so they solve
the model's own objective to rounding level, warm-started at the fitted
parameters, and certify it: the gradient of every refit's objective at its
result is measured and recorded.

Smooth GLMs take the fast path. One factorisation of the full Hessian
``H = H(theta)`` serves every refit: leaving row j out (or lowering its
weight) changes it by ``- c_j D_j (x) z_j z_j'``, a rank-K term, so by the
Woodbury identity::

    H_{-j}^-1 = H^-1 + B_j W_j B_j',    B_j = H^-1 (I_K (x) z_j)   (n_params, K)
    W_j = c_j D_j (I_K - A_jj c_j D_j)^-1,  A_jj = (I_K (x) z_j)' B_j   (K, K)

and each refit iterates the chord method (Newton's method with the Jacobian
frozen at the start)::

    theta <- theta - H_{-j}^-1 grad J_{-j}(theta)

from the baseline optimum: its first iterate is the Newton estimate of
:mod:`skinfluence._newton`, and it converges linearly with a rate of the
order of the parameter change, so a few iterations reach rounding level.
Many refits go at once: the raw predictions of b parameter vectors on all
training rows are one product ``Z @ Theta'``, their gradients another, the
Woodbury corrections batched K x K algebra. A refit whose iteration
contracts too slowly takes full Newton steps instead (``H_{-j}`` re-formed
at its iterate), and where even that is impossible the estimator's own
solver refits it.
"""

import copy
import functools
import sys
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import gen_batches
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _num_samples, check_is_fitted

from ._hinge_qp import hinge_refit
from ._scoring import _tqdm
from ._torch_path import is_torch_model
from .models import get_adapter, split_pipeline
from .models._glm import (
    EpsilonInsensitiveLoss,
    GLMAdapter,
    MarginLoss,
    SoftmaxLoss,
    SquaredLoss,
    TweedieLoss,
    kron_rows,
)
from .models._tweedie import GLM_REGRESSORS
from .solvers import CGSolver, DirectSolver
from .utils._compat import _check_sample_weight, get_chunk_n_rows
from .utils._validation import check_features

__all__ = ["linear_datamodeling_score", "loo_influence"]

# Stopping and certification, in units of the gradient's rounding scale (the
# norm of the sum of the absolute values of its terms, see _gradient_scale):
# a gradient computed in double precision is not reliable below ~1e-16 of it.
_RTOL = 1e-13  # an iteration stops as soon as it gets here
_RTOL_CERTIFIED = 1e-11  # or here, once it stops decreasing (rounding floor)
_CONTRACTION = 0.5  # a slower chord step hands the refit to Newton's method
_MAX_CHORD_ITER = 50
_MAX_NEWTON_ITER = 100
# Steps after the first apply a single-precision copy of H^-1 where the
# condition number of H is at most this: the fixed point is set by the
# double-precision gradient alone, the step's error (~6e-8 * kappa,
# relative) only adds to the contraction rate.
_FLOAT32_MAX_COND = 1e5


def _newton_done(norm, prev, scale):
    """Newton's iteration stops at _RTOL, or at the rounding floor: certified
    and no longer contracting."""
    return norm <= _RTOL * scale or (
        norm > _CONTRACTION * prev and norm <= _RTOL_CERTIFIED * scale)


def loo_influence(
    estimator,
    X_train,
    y_train,
    X_test,
    y_test,
    train_indices=None,
    *,
    groups=None,
    sample_weight=None,
    epsilon=None,
    t=0.1,
    n_jobs=None,
    verbose=0,
    return_info=False,
):
    """Actual change of each test loss when training rows are left out.

    Refits the model once per listed training row, without that row (or with
    its weight lowered by ``epsilon``), and measures the test losses against
    one more refit with nothing removed (so that both ends of each difference
    carry the same solver error). Earlier
    Pipeline steps are kept fixed, as :class:`~skinfluence.InfluenceEstimator`
    assumes. Every refit of a smooth model is certified: the gradient of its
    objective at the result is measured, and a ConvergenceWarning names any
    that is not at rounding level.

    Parameters
    ----------
    estimator : estimator object
        A fitted supported model or Pipeline ending in one, trained on
        ``(X_train, y_train)``; its parameters are the warm start. A
        :class:`~skinfluence.torch.TorchModel` or a fitted skorch net
        (read through :meth:`TorchModel.from_skorch
        <skinfluence.torch.TorchModel.from_skorch>`) is refitted on its
        objective, see Notes.
    X_train : {array-like, sparse matrix} of shape (n_train, n_features)
        Training rows, raw.
    y_train : array-like of shape (n_train,)
        Training targets.
    X_test : {array-like, sparse matrix} of shape (n_test, n_features)
        Test rows, raw.
    y_test : array-like of shape (n_test,)
        Test targets.
    train_indices : array-like of int, or groups
        Training rows to leave out, one refit each. Or groups of rows, left
        out together, one refit per group, in the two forms of
        :meth:`InfluenceEstimator.group_influence
        <skinfluence.InfluenceEstimator.group_influence>`: a boolean array
        (or sparse matrix) of shape (n_groups, n_train), or one
        non-integer label per training row (columns in ``np.unique``
        order). Integer arrays are row indices: give integer group labels
        as ``groups``.
    groups : array-like of shape (n_train,), default=None
        Group labels of any type, integers included, one per training row
        (instead of ``train_indices``): one refit per group, columns in
        ``np.unique(groups)`` order. GLMs only.
    sample_weight : array-like of shape (n_train,), default=None
        Training weights the model was fitted with (for torch models:
        scikit-learn MLPs only).
    epsilon : float, default=None
        If given, lower row j's weight by the fraction ``epsilon`` instead of
        removing it, and return the change in test loss divided by
        ``epsilon``: the finite-difference derivative that the first-order
        influence function estimates.
    t : float, default=0.1
        Smooth-hinge temperature used to measure hinge models' test loss.
    n_jobs : int, default=None
        Batches of refits run in parallel through joblib (threads by
        default: the work is BLAS products, which release the GIL).
        Torch models are refitted one row after another, whatever n_jobs:
        threads would queue on the adapter's lock.
    verbose : int, default=0
        With ``verbose > 0``, a progress bar over the batches of refits on
        stderr when tqdm is installed, else joblib's messages.
    return_info : bool, default=False
        Whether to return the certification record too.

    Returns
    -------
    influence : ndarray of shape (n_test, len(train_indices)) or (n_test, n_groups)
        ``L(z_i; θ̂ without row j) − L(z_i; θ̂)`` in the test loss's units,
        the layout of :meth:`InfluenceEstimator.score_influence` (of
        :meth:`~skinfluence.InfluenceEstimator.group_influence` for
        groups).
    info : dict
        Only with ``return_info=True``. The record of the refits, one entry
        per refit in the order of ``train_indices``:

        - ``"method"``: ndarray of str, how each refit was solved: ``"chord"``
          (batched chord iterations), ``"newton"`` (full Newton steps after
          a slow chord iteration), ``"native"`` (the estimator's own solver,
          where Newton's method was impossible), ``"hinge-qp"`` (the exact
          hinge quadratic program of non-smooth SVMs).
        - ``"n_iter"``: ndarray of int, iterations per refit (chord plus
          Newton), and ``"n_chord_iter"``, ``"n_newton_iter"`` apart.
        - ``"grad_norm"``, ``"rel_grad_norm"``: ndarray of float, the norm
          of the gradient of the refit's own objective at its result, and
          that norm divided by ``"grad_scale"``, the gradient's rounding
          scale (see Notes).
        - ``"max_grad_norm"``, ``"max_rel_grad_norm"``: float, the largest
          of those, the baseline refit included.
        - ``"baseline"``: dict with the same entries for the refit that
          removes nothing.
        - ``"certified"``: bool, whether every refit reached rounding level
          (``max_rel_grad_norm <= rtol_certified``); ``"rtol"`` and
          ``"rtol_certified"``: the criteria.

        Hinge refits are exact active-set solutions whose objective has no
        gradient: their norms are NaN and their iteration counts 0.

        For torch models also ``"min_eigenvalue"`` (ndarray of float, the
        smallest eigenvalue of the Hessian of each refit's objective at its
        result) and ``"positive_definite"`` (ndarray of bool: whether that
        Hessian is, i.e. the refit is a strict local minimum, not a
        saddle), both in ``"baseline"`` too; ``"certified"`` requires both
        rounding-level gradients and positive definite Hessians.

    Warns
    -----
    ConvergenceWarning
        If a refit's gradient is not at rounding level: its relative norm
        exceeds ``rtol_certified`` (1e-11); or, for torch models, if a
        refit ends where the Hessian is not positive definite (a saddle).

    See Also
    --------
    skinfluence.InfluenceEstimator.score_influence : The estimates.

    Notes
    -----
    Smooth GLMs (every supported model but hinge-loss SVMs) are refitted by
    chord iterations on the model's own objective ``J``, warm-started at the
    baseline optimum: ``θ ← θ − H₋ⱼ(θ̂)⁻¹ ∇J₋ⱼ(θ)``, with ``H₋ⱼ(θ̂)``, the
    Hessian at the fitted parameters less row j's term, applied through the
    Woodbury identity from one factorisation of the full Hessian. The first
    iterate is the Newton estimate (Pregibon 1981; ``estimate="newton"``);
    later ones converge linearly at a rate of the order of the parameter
    change. Many refits are iterated at once as matrix products.
    Under ``class_weight="balanced"`` leaving a row out also re-weights its
    class; the gradients carry that exactly, the frozen Hessian does not,
    which slows the contraction by about one over the class's size.
    Steps after the first (which is exact) apply a single-precision copy of
    ``H⁻¹`` where ``H`` is well conditioned (condition number at most 1e5):
    the iteration's fixed point is set by the double-precision gradient
    alone, the step's rounding only adds about ``1e-7 κ`` to the rate. A
    refit whose gradient norm falls by less than half in a step takes full Newton
    steps from where it is (Hessian re-formed at each step); where that
    Hessian is singular the estimator's own solver refits, tightly (Ridge in
    closed form, LogisticRegression with ``solver="newton-cholesky"``,
    liblinear at ``tol=1e-12``). The baseline is the fitted parameters
    polished by the same iteration. Features that are zero on every
    training row are left out of the algebra: their weights are at their
    optimum, 0 (or, unpenalised, as fitted), in every refit alike.

    Stopping and certification use the gradient's rounding scale
    ``σ = ‖Σⱼ |sⱼ| (|gⱼ| + |Dⱼ| |rawⱼ|) ⊗ |zⱼ| + |Λθ|‖`` at the baseline: the
    size of the terms the gradient sums, so that a gradient computed in
    double precision is exact only to about ``1e-16 σ``. An iteration stops
    when ``‖∇J₋ⱼ(θ)‖ ≤ 1e-13 σ`` (``rtol``), or when it stops decreasing (by
    half a step) below ``1e-11 σ`` (``rtol_certified``), the level where
    rounding takes over on hard problems; a refit left above that is not
    certified.

    Hinge-loss SVMs (``LinearSVC(loss="hinge")``, ``SGDClassifier(
    loss="hinge")``) are refitted exactly by their dual quadratic program,
    and their test loss measured with the smooth hinge of temperature ``t``.

    Torch models (a :class:`~skinfluence.torch.TorchModel`, or a skorch net)
    follow Koh and Liang's protocol for non-convex models: each refit is
    warm-started at the fitted parameters and solved tightly by a
    full-batch second-order method, in float64 (a float64 copy of the module
    where it is not), through ``torch.func`` on a copy of the module
    sharing its tensors, so the user's module is never modified. The
    objective is the adapter's, ``J₋ⱼ(θ) = Σᵢ≠ⱼ lᵢ(θ) + ½ λₙ ‖θ‖²`` over the
    selected parameters (``TorchModel.params``; the others stay fixed),
    with the *same* ``λₙ = n_train · weight_decay`` as the full objective:
    that is what the influence estimate differentiates (removing row j's
    term only). Retraining on n − 1 rows with the same ``weight_decay``
    would also lower the penalty, by ``½ weight_decay ‖θ‖²``, a different
    perturbation of the same order. The baseline is θ̂ polished on the full
    objective; each refit starts there with chord iterations on the exact
    Hessian of its own objective at the baseline (the full Hessian less
    row j's, formed densely by Hessian-vector products), and one that
    contracts slowly continues by Newton's method with the Hessian
    re-formed (shifted where it is indefinite, steps accepted by Armijo's
    test). The Hessian at every result is formed and its smallest
    eigenvalue recorded: a refit that ends at a saddle is reported. The
    gradient's rounding scale is ``σ = ‖Σⱼ |∇lⱼ(θ)| + λₙ |θ|‖``, with the
    same criteria as above. Dense Hessians limit this to models of at most
    5,000 selected parameters; each refit costs about one full Hessian
    (``n_params`` Hessian-vector products over the training rows).

    References
    ----------
    Pregibon, D. (1981). Logistic regression diagnostics. The Annals of
    Statistics, 9(4), 705-724.

    Ortega, J. M. and Rheinboldt, W. C. (1970). Iterative Solution of
    Nonlinear Equations in Several Variables. Academic Press (the chord
    method: Newton's method with the Jacobian held fixed).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinfluence.datasets import load_digits_1v7
    >>> from skinfluence.validation import loo_influence
    >>> data = load_digits_1v7()
    >>> model = LogisticRegression(solver="newton-cholesky", tol=1e-12)
    >>> model = model.fit(data.X_train, data.y_train)
    >>> actual, info = loo_influence(model, data.X_train, data.y_train,
    ...                              data.X_test[:3], data.y_test[:3], [0, 1],
    ...                              return_info=True)
    >>> actual.shape
    (3, 2)
    >>> bool(info["certified"])
    True
    """
    head, model = split_pipeline(estimator)
    masks = _group_masks(train_indices, groups, _num_samples(X_train))
    if masks is not None:
        return _loo_groups(estimator, head, model, X_train, y_train, X_test, y_test,
                           masks, sample_weight=sample_weight, epsilon=epsilon,
                           t=t, return_info=return_info)
    train_indices = np.asarray(train_indices, dtype=np.intp).ravel()
    if is_torch_model(model):
        if head is not None:
            check_is_fitted(head)
            X_train, X_test = head.transform(X_train), head.transform(X_test)
        influence, info = _loo_torch(
            model, X_train, y_train, X_test, y_test, train_indices,
            sample_weight=sample_weight, epsilon=epsilon, verbose=verbose)
        _warn_uncertified(info, train_indices)
        _warn_saddles(info, train_indices)
        return (influence, info) if return_info else influence
    Xt, y_train, sw, adapter, Xs = _glm_inputs(
        estimator, head, model, X_train, y_train, X_test, sample_weight, t)
    Zs = adapter.features(Xs)
    ys = adapter.encode_y(y_test)
    removed = 1.0 if epsilon is None else float(epsilon)

    if adapter.joint_scale:
        weights = [_weights_without(sw, j, removed) for j in train_indices]
        losses, info = _huber_refits(adapter, Xt, y_train, sw, weights, Zs, ys,
                                     n_jobs=n_jobs)
    elif not adapter.smooth:
        thetas = _hinge_refits(adapter, Xt, y_train, sw, train_indices, removed)
        losses = _test_losses(adapter, Zs, ys, np.asarray(thetas))
        info = _hinge_info(len(train_indices))
    else:
        refits = _LeaveOneOut(model, adapter, Xt, y_train, sw, removed)
        losses, info = refits.run(train_indices, Zs, ys, n_jobs=n_jobs,
                                  verbose=verbose)
    _warn_uncertified(info, train_indices)
    influence = (losses[:, 1:] - losses[:, :1]) / removed
    return (influence, info) if return_info else influence


# --------------------------------------------------------------------------
# Groups: one refit per group of rows left out together
# --------------------------------------------------------------------------


def _glm_inputs(estimator, head, model, X_train, y_train, X_test, sample_weight, t):
    """A GLM's training and test features through the fixed Pipeline head,
    checked; y, the sample weights and the model's adapter."""
    check_is_fitted(estimator)
    Xt = X_train if head is None else head.transform(X_train)
    Xt = check_features(Xt, getattr(model, "n_features_in_", None))
    Xs = X_test if head is None else head.transform(X_test)
    Xs = check_features(Xs, getattr(model, "n_features_in_", None))
    y_train = np.asarray(y_train)
    sw = _check_sample_weight(sample_weight, Xt)
    adapter = get_adapter(model, y=y_train, sample_weight=sample_weight,
                          n_train=Xt.shape[0], t=t)
    return Xt, y_train, sw, adapter, Xs


def _group_masks(train_indices, groups, n_train):
    """Groups as CSR masks (n_groups, n_train), or None for row indices."""
    from ._groups import check_groups

    if groups is not None:
        if train_indices is not None:
            raise ValueError("Give train_indices or groups, not both.")
        return check_groups(groups, n_train)[0]
    if train_indices is None:
        raise ValueError("loo_influence needs train_indices (or groups).")
    if sp.issparse(train_indices):
        return check_groups(train_indices, n_train)[0]
    idx = np.asarray(train_indices)
    if idx.ndim == 2 or (idx.ndim == 1 and idx.size and idx.dtype.kind not in "iu"):
        if idx.ndim == 1 and idx.dtype.kind == "b":
            raise ValueError(
                "A 1-D boolean train_indices is ambiguous: give row indices "
                "(np.flatnonzero(mask)) or one group as a (1, n_train) mask."
            )
        return check_groups(idx, n_train)[0]
    return None


def _krylov_step(base, Z, y_enc, s):
    """Newton steps of the group refits by CG, preconditioned with the
    baseline's factorised Hessian.

    Each refit's Hessian differs from the baseline's by its group's rows
    and by how far it moves: preconditioned by the baseline's inverse, CG
    needs few products (one pass over the rows each) where a dense step
    would form and factorise a new Hessian. A step CG cannot vouch for
    falls back to that dense one.
    """
    _, hess = base.pointwise_grad_hess(y_enc, base.raw_prediction(Z))
    try:
        factor = DirectSolver(damping=0.0).fit(base.hessian(Z, s, hess),
                                               null_space=base.null_space())
    except ValueError:
        return _dense_newton_step

    def solve(current, Z, s, hess, grad):
        cg = CGSolver(tol=1e-12, max_iter=200, preconditioner=factor).fit(
            current.hessian_operator(Z, s, hess), null_space=current.null_space())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ConvergenceWarning)
                return cg.solve(grad)
        except (ConvergenceWarning, ValueError):
            return _dense_newton_step(current, Z, s, hess, grad)

    return solve


def _loo_groups(estimator, head, model, X_train, y_train, X_test, y_test, masks, *,
                sample_weight, epsilon, t, return_info):
    """``loo_influence`` for groups: refit each objective without a group.

    Each refit is damped Newton on the model's own objective with the
    group's rows at weight 0 (lowered by ``epsilon``, with it), from the
    polished baseline, its steps by CG preconditioned with the baseline's
    factor (``_krylov_step``), and certified like the row refits: by the
    gradient of its own objective at the result.
    """
    from ._groups import refuse_empty, refuse_lost_class

    if is_torch_model(model):
        raise ValueError("loo_influence refits groups of GLMs only; for torch "
                         "models give train_indices, one row per refit.")
    Xt, y_train, sw, adapter, Xs = _glm_inputs(
        estimator, head, model, X_train, y_train, X_test, sample_weight, t)
    refuse_empty(masks, np.arange(masks.shape[0]), Xt.shape[0])
    removed = 1.0 if epsilon is None else float(epsilon)
    Z = adapter.features(Xt)
    y_enc = adapter.encode_y(y_train)
    Zs, ys = adapter.features(Xs), adapter.encode_y(y_test)
    labels = np.arange(masks.shape[0])
    if epsilon is None:  # lowering weights by epsilon leaves every class
        refuse_lost_class(adapter, y_enc, sw, masks, labels)
    weights = [sw * (1.0 - removed * masks[g].toarray().ravel())
               for g in range(masks.shape[0])]
    if adapter.joint_scale:
        losses, info = _huber_refits(adapter, Xt, y_train, sw, weights, Zs, ys)
    elif not adapter.smooth:
        if adapter.n_outputs != 1:
            raise ValueError(
                "loo_influence refits hinge-loss models exactly for binary "
                "problems only; this model has one-vs-rest outputs.")
        thetas = []
        base, a_full = hinge_refit(adapter, Z, y_enc, _row_scale(adapter, y_enc, sw))
        thetas = [base] + [hinge_refit(adapter, Z, y_enc,
                                       _row_scale(adapter, y_enc, w), a0=a_full)[0]
                           for w in weights]
        losses = _test_losses(adapter, Zs, ys, np.asarray(thetas))
        info = _hinge_info(len(weights))
    else:
        s = _row_scale(adapter, y_enc, sw)
        scale = _gradient_scale(adapter, Z, y_enc, s)
        base, n_base = _newton_iterations(adapter, Z, y_enc, s, scale)
        start = adapter.with_theta(base)
        step_solve = _krylov_step(start, Z, y_enc, s)
        thetas, n_iter, norms = [base], [], []
        for g, w in enumerate(weights):
            s_g = _row_scale(adapter, y_enc, w)
            try:
                theta, n = _newton_iterations(start, Z, y_enc, s_g, scale,
                                              step_solve=step_solve)
            except ValueError as exc:
                raise ValueError(
                    f"The objective without group {g} has no unique minimum (its "
                    "Hessian is singular: the rows left do not determine every "
                    "parameter), so there is no refit to measure."
                ) from exc
            thetas.append(theta)
            n_iter.append(n)
            norms.append(np.linalg.norm(
                adapter.with_theta(theta).objective_gradient(Z, y_enc, s_g)))
        b_norm = float(np.linalg.norm(start.objective_gradient(Z, y_enc, s)))
        m = len(weights)
        info = _refit_record(np.full(m, "newton", dtype=object),
                             np.zeros(m, dtype=np.intp), np.asarray(n_iter),
                             np.asarray(norms), ("newton", 0, n_base, b_norm), scale)
        losses = _test_losses(adapter, Zs, ys, np.asarray(thetas))
    _warn_uncertified(info, [f"group {g}" for g in range(masks.shape[0])])
    influence = (losses[:, 1:] - losses[:, :1]) / removed
    return (influence, info) if return_info else influence


# --------------------------------------------------------------------------
# Batched algebra of many objectives at once
# --------------------------------------------------------------------------


def _pointwise_gradient(loss, y_enc, raw):
    """``d l / d raw`` of raw predictions (n, m, K) of m parameter vectors.

    Only the gradient: the loss's ``objective_grad_hess`` also forms the
    (n, K, K) Hessians, m times over. ``raw`` is overwritten.
    """
    n, m, K = raw.shape
    if isinstance(loss, SoftmaxLoss):
        # Over the short last axis a loop of maxima beats max(axis=2), and
        # a product with ones sum(axis=2), by about two.
        top = raw[:, :, 0].copy()
        for k in range(1, K):
            np.maximum(top, raw[:, :, k], out=top)
        raw -= top[:, :, None]
        np.exp(raw, out=raw)
        raw /= (raw @ np.ones(K))[:, :, None]
        raw[np.arange(n), :, y_enc] -= 1.0
        return raw
    raw2 = raw.reshape(n * m, K)
    y2 = np.repeat(y_enc, m)
    if isinstance(loss, MarginLoss):  # its objective loss is its user loss
        return loss.user_grad(y2, raw2).reshape(n, m, K)
    return loss.objective_grad_hess(y2, raw2)[0].reshape(n, m, K)


def _batch_gradient(adapter, Z, ZT, y_enc, S, Theta):
    """Gradients (m, n_params) of m objectives at m parameter vectors.

    Column i of S (n, m) holds the row factors of objective i, row i of
    Theta its parameters: two products with Z whatever m is.
    """
    m, P = Theta.shape
    K = adapter.n_outputs
    n, p = Z.shape
    raw = np.asarray(Z @ Theta.reshape(m * K, p).T).reshape(n, m, K)
    g = _pointwise_gradient(adapter.loss, y_enc, raw)
    g *= S[:, :, None]
    G = np.asarray(ZT @ g.reshape(n, m * K))
    G = G.reshape(p, m, K).transpose(1, 2, 0).reshape(m, P)
    G += adapter.penalty * Theta
    G += adapter.linear
    return G


def _gradient_scale(adapter, Z, y_enc, s):
    """Rounding scale of the gradient of J at ``adapter.theta``.

    ``‖Σ_j |s_j| (|g_j| + |D_j| |raw_j|) (x) |z_j| + |Λ θ|‖``: the size of
    the terms the gradient sums, and of the error that rounding the raw
    predictions brings into each ``g_j``.
    """
    raw = adapter.raw_prediction(Z)
    grad, hess = adapter.pointwise_grad_hess(y_enc, raw)
    terms = np.abs(grad) + np.einsum("jkl,jl->jk", np.abs(hess),
                                     np.abs(raw[:, : hess.shape[2]]))
    terms *= np.abs(s)[:, None]
    absZ = abs(Z) if sp.issparse(Z) else np.abs(Z)
    G = np.asarray(absZ.T @ terms).T.ravel() + np.abs(
        adapter.penalty * adapter.theta) + np.abs(adapter.linear)
    return max(float(np.linalg.norm(G)), np.finfo(np.float64).tiny)


def _test_losses(adapter, Zs, ys, thetas):
    """Test losses (n_test, m) at m parameter vectors (m, n_params)."""
    m = thetas.shape[0]
    K = adapter.n_outputs
    n_test, p = Zs.shape
    raw = np.asarray(Zs @ thetas.reshape(m * K, p).T).reshape(n_test * m, K)
    return adapter.loss_from_raw(np.repeat(ys, m), raw).reshape(n_test, m)


def _largest_eigenvalue(A, n_iter=8):
    """Largest eigenvalue of a symmetric PSD matrix, by block power steps.

    A lower bound that is within a few per cent after a few steps unless
    the top eigenvalues cluster (then any of them will do).
    """
    V = np.random.default_rng(0).standard_normal((A.shape[0], 4)).astype(A.dtype)
    for _ in range(n_iter):
        V = np.linalg.qr(A @ V)[0]
    return float(np.linalg.norm(A @ V, axis=0).max())


def _chord_iterations(gradient, step, Theta, G, scale, max_iter):
    """Chord iterations of m refits at once, converged columns dropping out.

    ``gradient(Theta_sub, cols)`` returns the gradients of the refits
    ``cols`` at ``Theta_sub``, ``step(G_sub, cols)`` their steps; G holds
    the gradients at the start. Theta is updated in place.

    A column takes at least one step, then stops when its gradient norm
    reaches ``_RTOL * scale`` (status "done"), or stops decreasing by half
    below ``_RTOL_CERTIFIED * scale`` (the rounding floor: "done", at the
    better of its last two iterates);
    one that contracts more slowly above it, or is not finite, or is not
    done after ``max_iter`` steps is handed back ("slow").

    Returns ``(n_iter, grad_norm, slow)``, per column.
    """
    m = Theta.shape[0]
    n_iter = np.zeros(m, dtype=np.intp)
    norm = np.full(m, np.inf)
    slow = np.zeros(m, dtype=bool)
    prev_theta = np.empty_like(Theta)
    act = np.arange(m)
    for it in range(max_iter + 1):
        g = np.linalg.norm(G, axis=1)
        ratio = g / norm[act] if it else np.zeros_like(g)
        # Every refit takes at least its first (Newton) step: a perturbation
        # whose gradient is already below the stopping level (a tiny
        # epsilon on a well-fitted row) still moves the parameters.
        done = (g <= _RTOL * scale) & ((it > 0) | (g == 0))
        slower = ~(ratio <= _CONTRACTION)  # NaN too
        stalled = slower & (g <= _RTOL_CERTIFIED * scale)
        bad = slower & ~stalled | ~np.isfinite(g)
        bad |= (it == max_iter) & ~done & ~stalled
        worse = ~(ratio <= 1.0)  # stalled or bad: stops here
        if np.any(worse):  # back to the better iterate, whose norm is known
            back = act[worse]
            Theta[back] = prev_theta[back]  # the step still counts
            g = np.where(worse, norm[act], g)
        norm[act] = g
        slow[act[bad]] = True
        keep = ~(done | stalled | bad)
        if it == max_iter or not np.any(keep):
            break
        act, Gk = act[keep], G[keep]
        prev_theta[act] = Theta[act]
        Theta[act] -= step(Gk, act)
        n_iter[act] += 1
        G = gradient(Theta[act], act)
    return n_iter, norm, slow


# --------------------------------------------------------------------------
# The refits
# --------------------------------------------------------------------------


class _LeaveOneOut:
    """Leave-one-out refits of a smooth GLM on its own objective.

    Holds the training data in the adapter's algebra, reduced to the
    features some training row uses, the baseline optimum, and, on the fast
    path, the dense inverse of the Hessian at the fitted parameters.
    """

    def __init__(self, model, adapter, X, y, sw, removed):
        self.model, self.full, self.X, self.y, self.sw = model, adapter, X, y, sw
        self.removed = removed
        Z = adapter.features(X)
        self.y_enc = adapter.encode_y(y)
        self.s = _row_scale(adapter, self.y_enc, sw)
        K = adapter.n_outputs
        p_full = Z.shape[1]
        used = (Z.getnnz(axis=0) if sp.issparse(Z) else np.count_nonzero(Z, axis=0)) > 0
        self.keep = np.tile(used, K)
        # A feature no training row uses adds 1/2 lambda w^2 to J alone:
        # its weight's optimum is 0 (any value, unpenalised) in every refit.
        template = adapter.theta
        template[~self.keep & (adapter.penalty > 0)] = 0.0
        self.template = template
        self.Z = Z if np.all(used) else (Z[:, used] if not sp.issparse(Z) else
                                         Z.tocsc()[:, used].tocsr())
        self.ZT = self.Z.T.tocsr() if sp.issparse(self.Z) else self.Z.T
        self.adapter = adapter.with_theta(template[self.keep])
        self.adapter.penalty = adapter.penalty[self.keep]
        if np.ndim(adapter.linear):
            self.adapter.linear = adapter.linear[self.keep]
        self.K, self.p = K, self.Z.shape[1]
        self.P = K * self.p
        self.p_full = p_full
        self.fast = isinstance(adapter, GLMAdapter) and isinstance(
            adapter.loss, (SquaredLoss, MarginLoss, SoftmaxLoss, TweedieLoss,
                           EpsilonInsensitiveLoss))
        self.n_rhs = np.inf  # refits to come: whether to form H^-1

    # ---- parameters --------------------------------------------------------
    def expand(self, Theta):
        """Reduced parameter rows (m, P) -> full ones (m, n_params)."""
        out = np.repeat(self.template[None], Theta.shape[0], axis=0)
        out[:, self.keep] = Theta
        return out

    def reduce(self, theta_full):
        return np.asarray(theta_full, dtype=np.float64)[self.keep]

    # ---- row factors -------------------------------------------------------
    def row_scales(self, rows):
        """Row factors (n, b) of the objectives without each row of ``rows``.

        Under ``class_weight="balanced"`` a row's class is re-balanced, so
        the factors of the class's other rows move too, and under a mean
        over the sample weights every row's; returns also ``ratio``
        (b, n_groups), the factor by which each group's rows are scaled, or
        None (see :mod:`skinfluence.models._weights`).
        """
        b = len(rows)
        cols = np.arange(b)
        S = np.repeat(self.s[:, None], b, axis=1)
        ratio = None
        rw = self.full.reweighting
        if rw is not None:
            ratio = rw.ratios(self.y_enc, self.sw, rows,
                              self.sw[rows] * (1.0 - self.removed))
            S *= ratio[:, rw.index(self.y_enc)].T
        S[rows, cols] *= 1.0 - self.removed
        return S, ratio

    # ---- the baseline ------------------------------------------------------
    def prepare(self):
        """Polish the baseline, factorise the Hessian; False if singular."""
        a, Z, y_enc, s = self.adapter, self.Z, self.y_enc, self.s
        self.scale = _gradient_scale(a, Z, y_enc, s)
        try:
            solver = self._factorise(a.theta)
        except ValueError:  # singular Hessian: the estimator's own solver
            return False
        theta = a.theta[None].copy()

        def gradient(T, cols):
            return _batch_gradient(a, Z, self.ZT, y_enc, s[:, None], T)

        G = gradient(theta, None)
        n_chord, norm, slow = _chord_iterations(
            gradient, lambda G, cols: solver.solve(G.T).T, theta, G, self.scale,
            _MAX_CHORD_ITER)
        method, n_newton = "chord", 0
        if slow[0]:  # far from the optimum (SGD): Newton's method, re-formed
            try:
                theta[0], n_newton = _newton_iterations(
                    a.with_theta(theta[0]), Z, y_enc, s, self.scale)
            except ValueError:
                return False
            method = "newton"
            norm[0] = np.linalg.norm(gradient(theta, None))
        self.theta_star = theta[0]
        star = a.with_theta(self.theta_star)
        self.scale = _gradient_scale(star, Z, y_enc, s)
        if method == "newton" or n_chord[0] > 3:
            # The Hessian at the fitted parameters is far from the optimum's.
            try:
                solver = self._factorise(self.theta_star)
            except ValueError:
                return False
        self.baseline = {"method": method, "n_chord_iter": int(n_chord[0]),
                         "n_newton_iter": int(n_newton),
                         "grad_norm": float(norm[0])}
        self.solver = solver
        # Dense H^-1 once, then products, when the right-hand sides (about
        # K + 4 per refit) outnumber a third of the parameters: the inverse
        # costs twice the factorisation, and with it B_j costs one product
        # of H^-1 with a vector instead of K solves; products are also
        # faster than triangular solves, and can be single precision.
        self.Hinv = None
        if self.n_rhs * (self.K + 4) > self.P / 3:
            self.Hinv = solver.inverse()  # from its Cholesky factor
            self.solver = None  # its factor is not needed any more
        self.Hinv32 = None
        if self.Hinv is not None:
            single = self.Hinv.astype(np.float32)
            # ||H||_1 >= ||H||_2: an estimate of the condition number from
            # above, up to the power steps' (the copy suffices for those).
            if self.h_norm * _largest_eigenvalue(single) <= _FLOAT32_MAX_COND:
                self.Hinv32 = single
        raw = star.raw_prediction(Z)
        self.grad_star = star.pointwise_grad_hess(y_enc, raw)[0]
        self.base_gradient = _batch_gradient(a, Z, self.ZT, y_enc, s[:, None],
                                             self.theta_star[None])[0]
        self.base_shift = self.inverse_rows(self.base_gradient[None])[0]
        self.class_gradients = self.class_shifts = None
        if self.full.reweighting is not None:
            self.class_gradients = star.class_gradients(Z, y_enc, s, self.grad_star)
            self.class_shifts = self.inverse_rows(self.class_gradients.T)
        return True

    def inverse_rows(self, V, single=False):
        """``V H^-1`` for rows V (m, P): rows of H^-1 applied to v.

        With ``single``, in single precision where H is well conditioned
        (a chord step after the first, which need not be exact).
        """
        if single and self.Hinv32 is not None:
            return (V.astype(np.float32) @ self.Hinv32).astype(np.float64)
        if self.Hinv is not None:
            return V @ self.Hinv  # H^-1 is symmetric
        return self.solver.solve(V.T).T

    def _factorise(self, theta):
        """The Cholesky of H at theta; keeps the pointwise Hessians D_j."""
        a = self.adapter.with_theta(theta)
        _, self.hess = a.pointwise_grad_hess(self.y_enc, a.raw_prediction(self.Z))
        H = a.hessian(self.Z, self.s, self.hess)
        self.h_norm = float(np.abs(H).sum(axis=0).max())  # >= its 2-norm
        solver = DirectSolver(damping=0.0).fit(H, null_space=a.null_space())
        return solver

    # ---- chord refits ------------------------------------------------------
    def chord(self, rows, max_iter=None):
        """Chord refits without each row: ``(Theta, S, n_iter, norm, slow)``.

        Theta (b, P) in the reduced layout, S the refits' row factors; at
        most ``max_iter`` steps (default ``_MAX_CHORD_ITER``).
        """
        max_iter = _MAX_CHORD_ITER if max_iter is None else max_iter
        K, p, P = self.K, self.p, self.P
        a, Z, y_enc = self.adapter, self.Z, self.y_enc
        b = len(rows)
        cols = np.arange(b)
        S, ratio = self.row_scales(rows)
        Zr = Z[rows]
        Zr = Zr.toarray() if sp.issparse(Zr) else np.asarray(Zr)
        # B[i] = H^-1 (I_K (x) z_i), (P, K); A_ii = (I_K (x) z_i)' B[i].
        if self.Hinv is not None:
            B = (Zr @ self.Hinv.reshape(P * K, p).T).reshape(b, P, K)
        else:
            Y = kron_rows(np.tile(np.eye(K), (b, 1)), np.repeat(Zr, K, axis=0))
            B = self.inverse_rows(Y).reshape(b, K, P).transpose(0, 2, 1)
        A = np.einsum("if,ilfk->ilk", Zr, B.reshape(b, K, p, K))
        # Row i's change of the Hessian where it was formed: -c_i D_i (x) z z'.
        C = (self.s[rows] - S[rows, cols])[:, None, None] * self.hess[rows]
        M = np.eye(K) - A @ C
        cond = np.linalg.cond(M)
        ok = np.isfinite(cond) & (cond < 1e12)  # else leverage 1: no chord
        W = np.zeros_like(M)
        if np.any(ok):
            W[ok] = C[ok] @ np.linalg.inv(M[ok])

        # The gradients at the baseline, by difference: the full one less
        # what the row carried (plus its class's re-balancing).
        own = self.s[rows] - S[rows, cols]
        if ratio is not None:
            group = self.full.reweighting.index(y_enc[rows])
            own = ratio[cols, group] * self.s[rows] - S[rows, cols]
        G = self.base_gradient - own[:, None] * kron_rows(self.grad_star[rows], Zr)
        # and H^-1 applied to them, without a product with H^-1: its part
        # along the row is B[i] g_i.
        U0 = self.base_shift - own[:, None] * np.einsum(
            "iak,ik->ia", B, self.grad_star[rows])
        if ratio is not None:
            G += (ratio - 1.0) @ self.class_gradients.T
            U0 += (ratio - 1.0) @ self.class_shifts

        held = [np.arange(b), B]  # B compacted to the active refits
        first = [True]

        def step(Gk, act):
            U = U0[act] if first[0] else self.inverse_rows(Gk, single=True)
            first[0] = False
            t = np.einsum("mkf,mf->mk", U.reshape(len(act), K, p), Zr[act])
            c = np.einsum("mkl,ml->mk", W[act], t)
            if not np.array_equal(held[0], act):
                held[1] = held[1][np.searchsorted(held[0], act)]
                held[0] = act
            U += np.einsum("mak,mk->ma", held[1], c)
            return U

        def gradient(T, act):
            return _batch_gradient(a, Z, self.ZT, y_enc, S[:, act], T)

        Theta = np.repeat(self.theta_star[None], b, axis=0)
        n_iter = np.zeros(b, dtype=np.intp)
        norm = np.linalg.norm(G, axis=1)
        # No chord without H_-j; but a row whose removal moves nothing
        # (a row fitted exactly by a parameter only it determines) is done.
        slow = ~ok & ~(norm <= _RTOL * self.scale)
        if np.any(ok):
            idx = np.flatnonzero(ok)
            sub = Theta[idx]
            n_i, nrm, sl = _chord_iterations(
                lambda T, act: gradient(T, idx[act]),
                lambda Gk, act: step(Gk, idx[act]),
                sub, G[idx], self.scale, max_iter)
            Theta[idx], n_iter[idx], norm[idx], slow[idx] = sub, n_i, nrm, sl
        return Theta, S, n_iter, norm, slow

    def batch(self, rows, Zs, ys):
        """Refit without each of ``rows``; their test losses and record."""
        b = len(rows)
        Theta, S, n_chord, norm, slow = self.chord(rows)
        method = np.full(b, "chord", dtype=object)
        n_newton = np.zeros(b, dtype=np.intp)
        for i in np.flatnonzero(slow):
            Theta[i], method[i], n_newton[i], norm[i] = self._fallback(
                rows[i], Theta[i], S[:, i])
        losses = _test_losses(self.full, Zs, ys, self.expand(Theta))
        return losses, method, n_chord, n_newton, norm

    def _fallback(self, j, theta, s):
        """Newton's method from the chord's iterate, else the native refit."""
        a = self.adapter
        start = theta if np.all(np.isfinite(theta)) else self.theta_star
        try:
            theta, n_iter = _newton_iterations(a.with_theta(start), self.Z,
                                               self.y_enc, s, self.scale)
            method = "newton"
        except ValueError:
            theta = self.reduce(_refit_native(self.model, self.full, self.X,
                                              self.y, self.sw, j, self.removed))
            n_iter, method = 0, "native"
        g = _batch_gradient(a, self.Z, self.ZT, self.y_enc, s[:, None], theta[None])
        return theta, method, n_iter, float(np.linalg.norm(g))

    # ---- everything --------------------------------------------------------
    def run(self, rows, Zs, ys, *, n_jobs=None, verbose=0):
        """Test losses (n_test, 1 + len(rows)), baseline first; the record."""
        self.n_rhs = len(rows)
        if not (self.fast and self.prepare()):
            return self._slow(rows, Zs, ys, n_jobs=n_jobs)
        n_test = Zs.shape[0]
        n, K, P = self.Z.shape[0], self.K, self.P
        # Per refit: its row factors, raw predictions and pointwise gradients
        # (a few copies), B_j and the parameter-sized vectors, test raws.
        row_bytes = 8 * (n * (1 + 4 * K) + P * (K + 6) + self.template.size
                         + 2 * n_test * K)
        chunk = get_chunk_n_rows(row_bytes=row_bytes, max_n_rows=max(1, len(rows)))
        batches = list(gen_batches(len(rows), chunk)) if len(rows) else []
        tqdm = _tqdm() if verbose else None
        parallel = Parallel(n_jobs=n_jobs, verbose=0 if tqdm else verbose,
                            prefer="threads", return_as="generator")
        results = parallel(delayed(self.batch)(rows[sl], Zs, ys) for sl in batches)
        if tqdm is not None:
            results = tqdm(results, total=len(batches), file=sys.stderr,
                           desc=f"Refitting without {len(rows)} training rows",
                           unit="batch")
        parts = list(results)
        base_loss = _test_losses(self.full, Zs, ys, self.expand(self.theta_star[None]))
        losses = np.hstack([base_loss] + [r[0] for r in parts])

        def cat(k, dtype):
            return (np.concatenate([r[k] for r in parts]) if parts
                    else np.zeros(0, dtype=dtype))

        base = self.baseline
        return losses, self._record(
            cat(1, object), cat(2, np.intp), cat(3, np.intp), cat(4, float),
            (base["method"], base["n_chord_iter"], base["n_newton_iter"],
             base["grad_norm"]))

    def _record(self, method, n_chord, n_newton, norm, baseline):
        return _refit_record(method, n_chord, n_newton, norm, baseline,
                             getattr(self, "scale", np.nan))

    def _slow(self, rows, Zs, ys, *, n_jobs=None):
        """One refit at a time: where the fast path cannot go."""
        model, full = self.model, self.full
        newton = _newton_refits(model)
        refit = _refit_newton if newton else _refit_native
        thetas = Parallel(n_jobs=n_jobs)(
            delayed(refit)(model, full, self.X, self.y, self.sw, j, r)
            for j, r in [(0, 0.0)] + [(j, self.removed) for j in rows]
        )
        Theta = np.asarray(thetas)
        if not hasattr(self, "scale"):
            self.scale = _gradient_scale(self.adapter, self.Z, self.y_enc, self.s)
        # Certify: the gradient of each refit's own objective at its result.
        Theta_r = Theta[:, self.keep]
        # Weights of features no row uses: their gradient is Lambda theta.
        norm = np.linalg.norm(self.full.penalty[~self.keep] * Theta[:, ~self.keep],
                              axis=1)
        S = np.hstack([self.s[:, None], self.row_scales(rows)[0]])
        for sl in gen_batches(len(Theta), 256):
            g = _batch_gradient(self.adapter, self.Z, self.ZT, self.y_enc,
                                S[:, sl], Theta_r[sl])
            norm[sl] = np.hypot(norm[sl], np.linalg.norm(g, axis=1))
        losses = _test_losses(full, Zs, ys, Theta)
        m = len(rows)
        method = "newton" if newton else "native"
        return losses, self._record(
            np.full(m, method, dtype=object), np.zeros(m, dtype=np.intp),
            np.zeros(m, dtype=np.intp), norm[1:],
            (method, 0, 0, float(norm[0])))


def _huber_refits(adapter, X, y, sw, weights, Zs, ys, n_jobs=None):
    """HuberRegressor refitted on each of ``weights``, sigma included.

    Damped Newton on the joint objective in (w, b, sigma) (convex, once
    differentiable, with a piecewise-smooth Hessian:
    ``HuberAdapter.joint_objective``), from the baseline: the fitted
    parameters polished the same way (L-BFGS-B stops at a relative decrease
    of 2.2e-9 of J, far from rounding level). Returns the test losses
    (n_test, 1 + len(weights)), baseline first, and the record.
    """
    Z = adapter.features(X)
    y_enc = adapter.encode_y(y)
    s = _row_scale(adapter, y_enc, sw)
    scale = adapter.gradient_scale(Z, y_enc, s)
    base, n_base, b_norm = _huber_newton(adapter, Z, y_enc, s,
                                         adapter.parameters(), scale)
    results = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_huber_newton)(adapter, Z, y_enc, _row_scale(adapter, y_enc, w),
                               base, scale)
        for w in weights)
    params = [base] + [r[0] for r in results]
    losses = np.column_stack([
        adapter.with_parameters(p).loss_from_raw(
            ys, adapter.with_parameters(p).raw_prediction(Zs))
        for p in params])
    m = len(weights)
    info = _refit_record(
        np.full(m, "newton", dtype=object), np.zeros(m, dtype=np.intp),
        np.array([r[1] for r in results], dtype=np.intp),
        np.array([r[2] for r in results]), ("newton", 0, n_base, b_norm), scale)
    return losses, info


def _huber_newton(adapter, Z, y_enc, s, params, scale, max_iter=_MAX_NEWTON_ITER):
    """Minimise HuberRegressor's joint objective from ``params``: Newton's
    steps, halved until Armijo's decrease holds (and sigma stays > 0);
    returns ``(params, n_iter, grad_norm)``."""
    current = adapter.with_parameters(params)
    value, grad, H = current.joint_objective(Z, y_enc, s)
    norm, prev, n_iter = np.linalg.norm(grad), np.inf, 0
    while n_iter < max_iter and not _newton_done(norm, prev, scale):
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, grad, rcond=None)[0]
        t, slope = 1.0, float(grad @ step)
        while t > 1e-12:
            trial = params - t * step
            if trial[-1] > 0:
                cand = adapter.with_parameters(trial)
                v, g, Hc = cand.joint_objective(Z, y_enc, s)
                # Armijo's decrease; or, where J cannot resolve the decrease
                # any more (its rounding), a smaller gradient.
                if v <= value - 1e-4 * t * slope or (
                        slope <= 1e-13 * abs(value) and np.linalg.norm(g) < norm):
                    break
            t *= 0.5
        else:
            break  # no decrease left: the rounding floor
        params, value, grad, H = trial, v, g, Hc
        prev, norm, n_iter = norm, np.linalg.norm(grad), n_iter + 1
    return params, n_iter, float(norm)


def _hinge_info(m):
    nan = np.full(m, np.nan)
    return {
        "method": np.full(m, "hinge-qp"), "n_iter": np.zeros(m, dtype=np.intp),
        "n_chord_iter": np.zeros(m, dtype=np.intp),
        "n_newton_iter": np.zeros(m, dtype=np.intp),
        "grad_norm": nan, "rel_grad_norm": nan.copy(),
        "max_grad_norm": np.nan, "max_rel_grad_norm": np.nan, "grad_scale": np.nan,
        "baseline": {"method": "hinge-qp", "n_iter": 0, "grad_norm": np.nan,
                     "rel_grad_norm": np.nan},
        "certified": True, "rtol": _RTOL, "rtol_certified": _RTOL_CERTIFIED,
    }


def _warn_uncertified(info, rows):
    rel = np.append(info["rel_grad_norm"], info["baseline"]["rel_grad_norm"])
    bad = np.flatnonzero(rel > _RTOL_CERTIFIED)
    if not bad.size:
        return
    worst = bad[np.argmax(rel[bad])]
    if worst < len(rows):
        name = rows[worst] if isinstance(rows[worst], str) else f"row {rows[worst]}"
        what = f"the refit without {name} ({info['method'][worst]})"
        absolute = info["grad_norm"][worst]
    else:
        what = f"the baseline refit ({info['baseline']['method']})"
        absolute = info["baseline"]["grad_norm"]
    warnings.warn(
        f"{bad.size} of {len(rel)} leave-one-out refits did not reach rounding "
        f"level: the worst, {what}, stopped with a gradient norm of "
        f"{absolute:.3g}, {rel[worst]:.3g} of the gradient's rounding scale "
        f"(certified up to {_RTOL_CERTIFIED:g}). Its test-loss changes may be "
        "inaccurate; check that the model's Hessian is well conditioned "
        "(regularisation) and that no left-out row determines parameters "
        "on its own.",
        ConvergenceWarning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------
# One refit at a time
# --------------------------------------------------------------------------


def _plain(model):
    """The plain model a CV variant refitted at its chosen hyperparameter
    (RidgeCV -> Ridge(alpha_), RidgeClassifierCV -> RidgeClassifier(alpha_),
    LogisticRegressionCV -> LogisticRegression(C_)), coefficients copied;
    other models as they are."""
    from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier

    name = type(model).__name__
    if name == "RidgeCV":
        plain = Ridge(alpha=float(np.ravel(model.alpha_)[0]),
                      fit_intercept=model.fit_intercept)
    elif name == "RidgeClassifierCV":
        plain = RidgeClassifier(alpha=float(np.ravel(model.alpha_)[0]),
                                fit_intercept=model.fit_intercept,
                                class_weight=model.class_weight)
        plain.classes_ = model.classes_
        plain._label_binarizer = model._label_binarizer
    elif name == "LogisticRegressionCV":
        ratio = getattr(model, "l1_ratio_", None)
        ratio = None if ratio is None else float(np.ravel(ratio)[0])
        plain = LogisticRegression(
            C=float(np.ravel(model.C_)[0]), solver=model.solver,
            fit_intercept=model.fit_intercept,
            intercept_scaling=model.intercept_scaling,
            class_weight=model.class_weight, max_iter=model.max_iter,
            l1_ratio=0.0 if ratio is None or np.isnan(ratio) else ratio)
        plain.classes_ = model.classes_
    elif name in ("LassoCV", "ElasticNetCV"):
        from sklearn.linear_model import ElasticNet

        plain = ElasticNet(alpha=model.alpha_,
                           l1_ratio=getattr(model, "l1_ratio_", 1.0),
                           fit_intercept=model.fit_intercept, positive=model.positive)
    else:
        return model
    plain.coef_ = np.array(model.coef_, copy=True)
    plain.intercept_ = np.array(model.intercept_, dtype=float, copy=True)
    plain.n_features_in_ = model.n_features_in_
    return plain


def _newton_refits(model):
    """Whether leave-one-out refits use Newton's method on the objective."""
    model = _plain(model)
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
    model = _plain(model)
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
    elif name in ("Lasso", "ElasticNet"):
        est.set_params(tol=1e-14, max_iter=1_000_000)
    elif name in GLM_REGRESSORS:
        # Every solver minimises the same objective; Newton's reaches it.
        est.set_params(solver="newton-cholesky", tol=1e-12, max_iter=10_000)
    elif name in ("Ridge", "RidgeClassifier"):
        # Closed form on dense data; the iterative sparse solver made tight.
        est.set_params(tol=1e-12, solver="auto" if not sp.issparse(X) else "sparse_cg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[keep], y[keep], sample_weight=w[keep])
    view = copy.copy(adapter)
    view.estimator = est
    return view.read_theta()


def _row_scale(adapter, y_enc, w):
    """Row factors of the objective on rows of weights w, re-balanced (or
    re-normalised, for a mean over the weights)."""
    s = adapter.row_scale(y_enc, w)
    rw = adapter.reweighting
    if rw is not None:
        s = s * (rw.factors(y_enc, w) / rw.base)[rw.index(y_enc)]
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


def _refit_newton(model, adapter, X, y, sw, j, removed, max_iter=_MAX_NEWTON_ITER):
    """Minimise the model's objective without row j by damped Newton steps."""
    w = _weights_without(sw, j, removed)
    Z = adapter.features(X)
    y_enc = adapter.encode_y(y)
    s = _row_scale(adapter, y_enc, w)
    return _newton_iterations(adapter, Z, y_enc, s, max_iter=max_iter)[0]


def _dense_newton_step(current, Z, s, hess, grad):
    """``H^-1 grad`` with the Hessian at ``current`` formed and factorised."""
    solver = DirectSolver(damping=0.0).fit(
        current.hessian(Z, s, hess), null_space=current.null_space())
    return solver.solve(grad[:, None])[:, 0]


def _newton_iterations(adapter, Z, y_enc, s, scale=None, max_iter=None,
                       step_solve=_dense_newton_step):
    """Damped Newton's method on J (row factors s) from ``adapter.theta``.

    Stops at the criterion of :func:`_chord_iterations` on the gradient norm
    (``scale``: its rounding scale, measured here if None), or when the step
    is at rounding level. ``step_solve(current, Z, s, hess, grad)`` returns
    the Newton step (by default from the Hessian formed and factorised; an
    inexact step only slows the iteration, which stops on the gradient
    alone). Returns ``(theta, n_iter)``; raises ValueError where the Hessian
    is singular.
    """
    max_iter = _MAX_NEWTON_ITER if max_iter is None else max_iter
    if scale is None:
        scale = _gradient_scale(adapter, Z, y_enc, s)
    current = adapter
    value = current.objective_value(Z, y_enc, s)
    prev = np.inf
    n_iter = 0
    for n_iter in range(max_iter + 1):
        raw = current.raw_prediction(Z)
        pointwise, hess = current.pointwise_grad_hess(y_enc, raw)
        grad = np.asarray(Z.T @ (s[:, None] * pointwise)).T.ravel()
        grad += current.penalty * current.theta + current.linear
        norm = np.linalg.norm(grad)
        if _newton_done(norm, prev, scale):
            break
        if n_iter == max_iter:
            break
        prev = norm
        step = step_solve(current, Z, s, hess, grad)
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
    return current.theta, n_iter


# --------------------------------------------------------------------------
# Torch models
# --------------------------------------------------------------------------

#: Dense Hessians (n_params ** 2 floats, one product per parameter) up to this.
_TORCH_MAX_PARAMS = 5000


def _torch_model(model, X, y):
    """The TorchModel of a TorchModel, skorch net or scikit-learn MLP (its
    float64 replica), the training rows as it takes them, and y as its loss
    takes it."""
    from sklearn.exceptions import NotFittedError

    from ._torch_path import _targets
    from .models._mlp import is_mlp
    from .torch import TorchModel, is_skorch_net

    if is_mlp(model):
        check_is_fitted(model)  # refitted without each row, so fitted already
        X = check_features(X, model.n_features_in_, name=type(model).__name__)
        X = X.toarray() if sp.issparse(X) else X
        model = TorchModel.from_mlp(model, X, y)
        return model, X, _targets(model, X, y)
    if is_skorch_net(model):
        if not (getattr(model, "initialized_", False) and len(model.history)):
            raise NotFittedError(
                "The skorch net is not fitted; loo_influence refits a trained "
                "net without each row, so fit it on (X_train, y_train) first.")
        model = TorchModel.from_skorch(model)  # float64 by default
    try:
        check_is_fitted(model)
    except NotFittedError:  # a TorchModel's fit records classes_, trains nothing
        model.fit(X, _targets(model, X, y))
    import torch

    if model._param()[0] != torch.float64:
        # Rounding-level refits need float64: a float64 copy of the module
        # (TorchModel.fit converts a copy; the user's module is left alone).
        model = clone(model).set_params(dtype="float64").fit(
            X, _targets(model, X, y))
    return model, X, _targets(model, X, y)


def _loo_torch(model, X_train, y_train, X_test, y_test, rows, *, sample_weight,
               epsilon, verbose):
    """loo_influence for a TorchModel, skorch net or MLP: (influence, info)."""
    from .models._mlp import is_mlp

    mlp = is_mlp(model)
    if sample_weight is not None and not mlp and getattr(model, "_mlp", None) is None:
        raise ValueError("sample_weight is not supported for torch models.")
    name, source = type(model).__name__, model
    model, X_train, y_train = _torch_model(model, X_train, y_train)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X_train)
    from ._torch_path import _targets
    from .models._torch import TorchAdapter

    if mlp:
        X_test = check_features(X_test, X_train.shape[1], name=name)
        X_test = X_test.toarray() if sp.issparse(X_test) else X_test
    y_test = _targets(model, X_test, y_test)
    adapter = TorchAdapter(model, X_train, y_train, sample_weight=sample_weight)
    bad = (rows < 0) | (rows >= adapter.n_train)
    if np.any(bad):
        raise IndexError(
            f"train_indices has {rows[bad][0]}, out of range for "
            f"{adapter.n_train} training rows.")
    if adapter.n_params > _TORCH_MAX_PARAMS:
        raise ValueError(
            f"loo_influence refits torch models by Newton's method on the dense "
            f"Hessian; this model has {adapter.n_params} parameters (at most "
            f"{_TORCH_MAX_PARAMS}). Restrict TorchModel.params to fewer.")
    removed = 1.0 if epsilon is None else float(epsilon)
    source = source if mlp else getattr(model, "_mlp", None)  # or a replica's
    null = (None if source is None else
            functools.partial(_mlp_null_space_at, source, X_train))
    refits = _TorchLeaveOneOut(adapter, removed, null_space=null)
    Xs, ys = model._to_tensor(X_test), model._target_tensor(y_test)
    losses, info = refits.run(rows, Xs, ys, verbose=verbose)
    return (losses[:, 1:] - losses[:, :1]) / removed, info


def _mlp_null_space_at(mlp, X, theta):
    """The null directions of an MLP replica's objective at theta, or None."""
    from .models._mlp import mlp_null_space

    return mlp_null_space(mlp, theta, X)


class _TorchLeaveOneOut:
    """Leave-one-out refits of a torch model on its objective, in float64.

    ``J_w(θ) = Σ_i w_i l_i(θ) + ½ θ' diag(λ_n) θ`` on the adapter's training
    rows (``w`` the adapter's row weights, one row's lowered; ``λ_n`` one
    number or one per coordinate), θ the selected parameters, run through
    ``torch.func`` on the adapter's private module under its lock: the
    user's module is never touched. Each refit runs chord iterations with
    the exact Hessian of its own objective at the baseline (the full Hessian
    less the row's), then, if they contract slowly, Newton's method with the
    Hessian re-formed (and shifted where it is indefinite); the Hessian at
    every result is formed to tell a minimum from a saddle.

    ``null_space(theta)``, where given (MLPs), returns an orthonormal basis
    of directions the objective cannot see at theta (exact symmetries of
    the parameters, see :func:`~skinfluence.models._mlp.mlp_null_space`):
    steps are taken with ``H + c N N'`` and the Hessian's eigenvalues are
    those on the identifiable subspace.
    """

    def __init__(self, adapter, removed, null_space=None):
        import torch

        self.torch = torch
        self.a = adapter
        self.removed = removed
        self.P = adapter.n_params
        self.n = adapter.n_train
        self.dtype, self.device = adapter.dtype, adapter.device
        # The penalty: a float, or a tensor per coordinate (and its NumPy copy).
        self.lam = adapter.lambda_n
        self.lam_np = (self.lam if adapter.uniform_decay
                       else self.lam.cpu().numpy().astype(np.float64))
        self.null_space = null_space

    # ---- the objective ----------------------------------------------------
    def _wsum(self, theta, x, t, w):
        return (self.a.loss_fn(self.a._output(theta, x), t) * w).sum()

    def _t(self, v):
        return self.torch.as_tensor(v, dtype=self.dtype, device=self.device)

    def weights(self, j=None):
        w = (self.torch.ones(self.n, dtype=self.dtype, device=self.device)
             if self.a.sw is None else self.a.sw.clone())
        if j is not None:
            w[j] = w[j] * (1.0 - self.removed)
        return w

    def value_grad(self, theta, w):
        """``(J_w(θ), ∇J_w(θ))``: a float and an ndarray (P,)."""
        from torch.func import grad_and_value

        th = self._t(theta)
        g = self.torch.zeros_like(th)
        value = 0.0
        with self.a._lock:
            for b in self.a._batches(self.n):
                gb, vb = grad_and_value(self._wsum)(th, self.a.X[b], self.a.y[b], w[b])
                g += gb.detach()
                value += float(vb)
        g += self.lam * th
        value += 0.5 * float((self.lam * th) @ th)
        return value, g.cpu().numpy().astype(np.float64)

    def gradient(self, theta, w):
        return self.value_grad(theta, w)[1]

    def hessian(self, theta, w, rows=None, penalty=True):
        """Dense Hessian (P, P) of ``Σ_{i in rows} w_i l_i`` (+ ½ λ_n ||θ||²)."""
        torch = self.torch
        th = self._t(theta)
        eye = torch.eye(self.P, dtype=self.dtype, device=self.device)
        H = torch.zeros((self.P, self.P), dtype=self.dtype, device=self.device)
        index = (self.a._batches(self.n) if rows is None else [rows])
        with self.a._lock:
            for b in index:
                H += self._hessian_rows(th, self.a.X[b], self.a.y[b], w[b], eye)
        H = H.cpu().numpy().astype(np.float64)
        H = (H + H.T) / 2
        if penalty:
            H[np.diag_indices_from(H)] += self.lam_np
        return H

    def _hessian_rows(self, th, x, t, w, eye):
        """``Σ_rows w_i ∇²l_i(θ)``: forward-over-reverse products with I."""
        from torch.func import grad, jvp, vmap

        g = grad(functools.partial(self._wsum, x=x, t=t, w=w))

        def hvp(v):
            return jvp(g, (th,), (v,))[1]

        # Products at once, bounded by rows x vectors.
        chunk = max(1, min(self.P, 2**16 // max(1, x.shape[0])))
        try:
            return vmap(hvp, chunk_size=chunk)(eye).detach()
        except RuntimeError:  # an op without a batching rule for jvp
            return self.torch.stack([hvp(v) for v in eye]).detach()

    def scale(self, theta, w):
        """Rounding scale ``‖Σ_i |w_i| |∇l_i(θ)| + λ_n |θ|‖`` of the gradient."""
        from torch.func import grad, vmap

        th = self._t(theta)
        acc = self.torch.zeros_like(th)
        loss = self.a.loss_fn

        def one(p, x, t):
            return loss(self.a._output(p, x[None]), t[None])[0]

        per_row = vmap(grad(one), in_dims=(None, 0, 0), chunk_size=64)
        with self.a._lock:
            for b in self.a._batches(self.n):
                G = per_row(th, self.a.X[b], self.a.y[b]).detach()
                acc += (w[b].abs()[:, None] * G.abs()).sum(dim=0)
        acc += self.lam * th.abs()
        return max(float(acc.norm()), np.finfo(np.float64).tiny)

    def test_losses(self, theta, Xs, ys):
        with self.a._lock, self.torch.no_grad():
            th = self._t(theta)
            out = [self.a.loss_fn(self.a._output(th, Xs[b]), ys[b])
                   for b in self.a._batches(Xs.shape[0])]
        if not out:
            return np.empty(0)
        return self.torch.cat(out).cpu().numpy().astype(np.float64)

    # ---- one refit ----------------------------------------------------------
    def _null(self, theta):
        return None if self.null_space is None else self.null_space(theta)

    def _shifted(self, H, theta):
        """``H + c N N'``, N the null directions at theta (H without any)."""
        N = self._null(theta)
        if N is None:
            return H
        return H + max(float(np.mean(np.diag(H))), 1e-300) * (N @ N.T)

    def _eigenvalues(self, H, theta):
        """H's eigenvalues (ascending) on the identifiable subspace at theta."""
        N = self._null(theta)
        if N is not None:
            Q = np.linalg.qr(N, mode="complete")[0][:, N.shape[1]:]
            H = Q.T @ H @ Q
        return self.torch.linalg.eigvalsh(self._linalg(H)).numpy()

    def _linalg(self, H):
        # Dense algebra in torch, on torch's threads like everything else here.
        return self.torch.from_numpy(np.ascontiguousarray(H, dtype=np.float64))

    def chord(self, theta, w, H, scale):
        """Chord iterations with the fixed Hessian H: (theta, n_iter, norm, slow)."""
        torch = self.torch
        L, status = torch.linalg.cholesky_ex(self._linalg(self._shifted(H, theta)))
        if status.item():  # indefinite here: Newton, shifted
            return theta, 0, np.inf, True

        def step(Gk, act):
            return torch.cholesky_solve(torch.from_numpy(Gk.T.copy()), L).numpy().T

        Theta = theta[None].copy()
        G = self.gradient(theta, w)[None]
        n_iter, norm, slow = _chord_iterations(
            lambda T, act: self.gradient(T[0], w)[None], step,
            Theta, G, scale, _MAX_CHORD_ITER)
        return Theta[0], int(n_iter[0]), float(norm[0]), bool(slow[0])

    def newton(self, theta, w, scale, max_iter=_MAX_NEWTON_ITER):
        """Newton's method, Hessian re-formed; shifted where indefinite.

        Steps are accepted by Armijo's test on J, up to its rounding; stops
        like the chord iterations. Returns ``(theta, n_iter, norm)``.
        """
        value, g = self.value_grad(theta, w)
        norm = float(np.linalg.norm(g))
        prev = np.inf
        n_iter = 0
        for n_iter in range(max_iter + 1):
            if _newton_done(norm, prev, scale):
                break
            if n_iter == max_iter:
                break
            prev = norm
            H = self._linalg(self._shifted(self.hessian(theta, w), theta))
            L, status = self.torch.linalg.cholesky_ex(H)
            if not status.item():
                step = self.torch.cholesky_solve(self.torch.from_numpy(g[:, None]),
                                                 L)[:, 0].numpy()
            else:
                # Not positive definite: the Levenberg-Marquardt shift that
                # makes it so (to a relative 1e-8), a descent direction.
                lam, V = (t.numpy() for t in self.torch.linalg.eigh(H))
                shift = max(0.0, 1e-8 * abs(lam[-1]) - lam[0])
                step = V @ ((V.T @ g) / (lam + shift))
            slack = 1e-14 * (abs(value) + 1.0)  # J's rounding
            rate = 1.0
            while rate > 1e-10:
                trial = theta - rate * step
                t_value, t_g = self.value_grad(trial, w)
                if np.isfinite(t_value) and (
                        t_value <= value - 1e-4 * rate * (g @ step) + slack):
                    break
                rate *= 0.5
            else:
                break
            theta, value, g = trial, t_value, t_g
            norm = float(np.linalg.norm(g))
        return theta, n_iter, norm

    def refit(self, theta0, w, H0, scale):
        """Minimise J_w from theta0, H0 its Hessian there; the record."""
        theta, n_chord, norm, slow = self.chord(theta0, w, H0, scale)
        method, n_newton = "chord", 0
        if slow:
            start = theta if np.all(np.isfinite(theta)) else theta0
            theta, n_newton, norm = self.newton(start, w, scale)
            method = "newton"
        H = self.hessian(theta, w)
        eig = self._eigenvalues(H, theta)
        return theta, H, {"method": method, "n_chord_iter": n_chord,
                          "n_newton_iter": n_newton, "grad_norm": norm,
                          "min_eigenvalue": float(eig[0]),
                          "max_eigenvalue": float(eig[-1])}

    # ---- everything ---------------------------------------------------------
    def run(self, rows, Xs, ys, *, verbose=0):
        """Test losses (n_test, 1 + len(rows)), baseline first; the record."""
        w_full = self.weights()
        theta_hat = np.asarray(self.a.theta, dtype=np.float64)
        scale = self.scale(theta_hat, w_full)
        theta_ref, H_ref, base = self.refit(
            theta_hat, w_full, self.hessian(theta_hat, w_full), scale)
        scale = self.scale(theta_ref, w_full)
        losses = [self.test_losses(theta_ref, Xs, ys)]
        records = []
        tqdm = _tqdm() if verbose else None
        it = rows if tqdm is None else tqdm(
            rows, file=sys.stderr, unit="refit",
            desc=f"Refitting without {len(rows)} training rows")
        for j in it:
            w = self.weights(j)
            # The Hessian of J without row j at the baseline, exactly.
            H_j = self.hessian(theta_ref, w_full, rows=slice(j, j + 1), penalty=False)
            theta, _, rec = self.refit(theta_ref, w, H_ref - self.removed * H_j, scale)
            losses.append(self.test_losses(theta, Xs, ys))
            records.append(rec)
        return np.stack(losses, axis=1), self._record(records, base, scale)

    @staticmethod
    def _record(records, base, scale):
        def col(key, dtype):
            return np.array([r[key] for r in records], dtype=dtype)

        n_chord, n_newton = col("n_chord_iter", np.intp), col("n_newton_iter", np.intp)
        low, high = col("min_eigenvalue", float), col("max_eigenvalue", float)
        # Positive definite beyond rounding of the eigenvalues.
        pd = low > 1e-13 * np.abs(high)
        base_pd = base["min_eigenvalue"] > 1e-13 * abs(base["max_eigenvalue"])
        info = _refit_record(
            [r["method"] for r in records], n_chord, n_newton, col("grad_norm", float),
            (base["method"], base["n_chord_iter"], base["n_newton_iter"],
             base["grad_norm"]), scale)
        info.update(min_eigenvalue=low, positive_definite=pd)
        info["baseline"].update(min_eigenvalue=base["min_eigenvalue"],
                                positive_definite=bool(base_pd))
        info["certified"] = bool(info["certified"] and np.all(pd) and base_pd)
        return info


def _refit_record(method, n_chord, n_newton, norm, baseline, scale):
    """What ``return_info=True`` returns of a batch of refits and its baseline."""
    b_method, b_chord, b_newton, b_norm = baseline
    all_norms = np.append(norm, b_norm)
    max_rel = float(np.max(all_norms) / scale)
    return {
        "method": np.asarray(method, dtype=str),
        "n_iter": n_chord + n_newton,
        "n_chord_iter": n_chord,
        "n_newton_iter": n_newton,
        "grad_norm": norm,
        "rel_grad_norm": norm / scale,
        "max_grad_norm": float(np.max(all_norms)),
        "max_rel_grad_norm": max_rel,
        "grad_scale": scale,
        "baseline": {"method": b_method, "n_iter": b_chord + b_newton,
                     "grad_norm": b_norm, "rel_grad_norm": b_norm / scale},
        "certified": bool(max_rel <= _RTOL_CERTIFIED),
        "rtol": _RTOL,
        "rtol_certified": _RTOL_CERTIFIED,
    }


def _warn_saddles(info, rows):
    bad = np.flatnonzero(~info["positive_definite"])
    base_bad = not info["baseline"]["positive_definite"]
    if not bad.size and not base_bad:
        return
    names = [f"row {rows[i]}" for i in bad[:5]] + (["the baseline"] if base_bad else [])
    more = f" and {bad.size - 5} more" if bad.size > 5 else ""
    warnings.warn(
        f"{bad.size + base_bad} leave-one-out refits ended where the Hessian of "
        f"their objective is not positive definite (without {', '.join(names)}"
        f"{more}): a saddle point or a flat direction, not a strict minimum. "
        "Their test-loss changes compare stationary points that need not be "
        "what training reaches; check info['min_eigenvalue'], and the fit of "
        "the model at its parameters.",
        ConvergenceWarning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------
# Linear datamodeling score
# --------------------------------------------------------------------------


def linear_datamodeling_score(influence_estimator, X_train, y_train, X_test, y_test,
                              *, n_subsets=100, fraction=0.5, n_steps=1,
                              random_state=None, return_values=False):
    """Linear datamodeling score (LDS) of a fitted InfluenceEstimator.

    dattri's protocol (Park et al. 2023, "TRAK"): ``n_subsets`` random
    subsets, each of ``fraction`` of the training rows; the wrapped model
    refitted exactly on each (:func:`loo_influence` with the rows left out
    as a group: warm-started, certified); the estimator's
    :meth:`~skinfluence.InfluenceEstimator.group_influence` of the rows
    left out, with the estimate it was built with, predicting each
    subset's test losses; and, for each test row, the Spearman correlation
    between predicted and actual loss changes across the subsets.

    Parameters
    ----------
    influence_estimator : InfluenceEstimator
        Fitted on ``(X_train, y_train)``, around a GLM family (the refits
        are of GLMs).
    X_train, y_train : array-like
        Its training rows, raw.
    X_test, y_test : array-like
        The rows whose losses are predicted.
    n_subsets : int, default=100
        Number of random subsets, each one refit.
    fraction : float, default=0.5
        Share of the training rows each subset keeps, in (0, 1).
    n_steps : int, default=1
        Passed to ``group_influence`` (Newton steps, ``estimate="newton"``).
    random_state : int, RandomState instance or None, default=None
        Draws the subsets.
    return_values : bool, default=False
        Also return the predicted and actual loss changes, each of shape
        (n_test, n_subsets), and the (n_subsets, n_train) boolean masks of
        the rows kept.

    Returns
    -------
    scores : ndarray of shape (n_test,)
        Spearman correlation per test row (1: the estimate orders the
        subsets exactly as refitting does). Their mean is the LDS.
    predicted, actual, kept : ndarrays
        Only with ``return_values=True``.
    """
    from scipy.stats import spearmanr
    from sklearn.utils import check_random_state

    check_is_fitted(influence_estimator, "theta_")
    if not isinstance(n_subsets, (int, np.integer)) or n_subsets < 2:
        raise ValueError(f"n_subsets must be an integer >= 2; got {n_subsets!r}.")
    n = influence_estimator.n_train_
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1); got {fraction!r}.")
    size = int(round(fraction * n))
    if not 0 < size < n:
        raise ValueError(
            f"fraction={fraction} keeps {size} of {n} training rows; a subset "
            "must keep at least one row and leave at least one out.")
    rng = check_random_state(random_state)
    kept = np.zeros((n_subsets, n), dtype=bool)
    for k in range(n_subsets):
        kept[k, rng.choice(n, size, replace=False)] = True
    predicted = influence_estimator.group_influence(X_test, y_test, ~kept,
                                                    n_steps=n_steps)
    w = getattr(influence_estimator, "_w_train", None)
    actual = loo_influence(influence_estimator.estimator_, X_train, y_train, X_test,
                           y_test, ~kept, sample_weight=w,
                           t=getattr(influence_estimator, "t", 0.1))
    scores = np.array([spearmanr(p, a).statistic for p, a in zip(predicted, actual)])
    return (scores, predicted, actual, kept) if return_values else scores
