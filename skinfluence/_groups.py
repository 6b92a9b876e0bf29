"""Group influence: what leaving out whole subsets of training rows does.

Two estimates, as for rows (see :meth:`InfluenceEstimator.group_influence
<skinfluence.InfluenceEstimator.group_influence>`):

- first order, every family: the sum of the group's rows' first-order
  influences, ``grad L_i' H^-1 sum_{j in G} grad l_j``, from the shared
  scoring module (each chunk of training rows' scores is summed into the
  groups it belongs to, so the (n_test, n_train) matrix is never held);
- Newton, GLMs: ``n_steps`` Newton steps on the model's own objective
  without the group, ``J_-G(theta) = J(theta) - sum_{j in G} s_j l_j``,
  from theta-hat, and the test losses evaluated exactly there.

Each Newton step solves ``H_-G(theta_t) delta = -grad``, with ``H_-G`` the
Hessian without the group's rows, by conjugate gradients preconditioned
with the full-data solver (``H^-1``, when it is exact): ``H^-1 H_-G`` is
the identity less a term of the group's rank, so CG needs about as many
iterations as the group has distinct directions of curvature, and each
costs one Hessian product (one pass over the training rows) and one solve
with the existing factor, never a new factorisation. The gradient is
taken relative to ``grad J(theta-hat)`` (zero at an exact minimum): the
first step is then exactly the Newton estimate of
:meth:`~skinfluence.InfluenceEstimator.score_influence` for a group of one
row, and the steps converge to the refit of ``J_-G`` shifted by the
fitted parameters' residual gradient (which the stationarity check bounds).
"""

from numbers import Integral

import numpy as np
import scipy.sparse as sp

from .models._glm import kron_rows
from .solvers import CGSolver
from .solvers._base import HessianOperator


def check_groups(groups, n_train):
    """Groups as a CSR matrix (n_groups, n_train) of 0/1, and their labels.

    ``groups`` is array-like of shape (n_train,) of labels (columns in
    ``np.unique`` order: the labels are returned) or a boolean array
    (n_groups, n_train) of subsets, possibly overlapping (labels
    ``arange(n_groups)``).
    """
    if sp.issparse(groups):
        masks = sp.csr_matrix(groups)
        if masks.dtype != bool:
            raise ValueError(
                "A sparse groups matrix must be boolean (n_groups, n_train); "
                f"got dtype {masks.dtype}."
            )
    else:
        groups = np.asarray(groups)
        if groups.ndim == 1:
            if groups.shape[0] != n_train:
                raise ValueError(
                    f"groups has {groups.shape[0]} labels but the estimator was "
                    f"fitted on {n_train} training rows; give one label per row "
                    "(or a boolean array of shape (n_groups, n_train))."
                )
            if groups.dtype.kind == "f" and not np.all(np.isfinite(groups)):
                raise ValueError("groups contains NaN or infinity.")
            labels, codes = np.unique(groups, return_inverse=True)
            masks = sp.csr_matrix(
                (np.ones(n_train, dtype=bool), (codes.ravel(), np.arange(n_train))),
                shape=(labels.size, n_train))
            return masks, labels
        if groups.ndim != 2 or groups.dtype != bool:
            raise ValueError(
                "groups must be array-like of shape (n_train,) of labels, or a "
                "boolean array of shape (n_groups, n_train) of rows to leave "
                f"out; got an array of shape {groups.shape} and dtype "
                f"{groups.dtype}."
            )
        masks = sp.csr_matrix(groups)
    if masks.shape[1] != n_train:
        raise ValueError(
            f"groups has {masks.shape[1]} columns but the estimator was fitted "
            f"on {n_train} training rows; the boolean form is (n_groups, "
            "n_train)."
        )
    if masks.shape[0] == 0:
        raise ValueError("groups holds no group (n_groups == 0).")
    return masks, np.arange(masks.shape[0])


def _name(label):
    """A group's label as messages show it: ``'twos'``, ``3``."""
    return repr(label.item() if isinstance(label, np.generic) else label)


def check_n_steps(n_steps, estimate):
    if not isinstance(n_steps, Integral) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer; got {n_steps!r}.")
    if n_steps != 1 and estimate != "newton":
        raise ValueError(
            f"n_steps={n_steps} applies to estimate='newton' (Newton steps of "
            "the objective without the group); estimate='influence' is the "
            "sum of the rows' first-order influences, with no steps to take."
        )


def refuse_empty(masks, labels, n_train):
    """Refuse a group that holds every training row."""
    full = np.flatnonzero(masks.getnnz(axis=1) == n_train)
    if full.size:
        raise ValueError(
            f"group {_name(labels[full[0]])} holds all {n_train} training rows: "
            "leaving it out leaves nothing to fit, so its influence is undefined."
        )


def refuse_lost_class(adapter, y_enc, w, masks, labels):
    """Refuse a group whose removal leaves the GLM's objective without a minimum.

    A classifier's unpenalised intercept of a class none of whose rows are
    left (with positive weight ``w``) runs off to minus infinity: the refit
    has no minimiser.
    """
    a = adapter
    if a.classes is None or not a.fit_intercept:
        return
    K = a.n_outputs
    p = a.n_params // K
    if np.any(a.penalty[p - 1::p] > 0):  # a penalised intercept keeps a minimum
        return
    weighted = w > 0
    n_classes = len(a.classes)
    member = sp.csr_matrix(
        (weighted.astype(np.float64), (y_enc, np.arange(y_enc.size))),
        shape=(n_classes, y_enc.size))
    # Weighted rows of each class that each group removes, against the total.
    removed = (masks.astype(np.float64) @ member.T).toarray()
    total = np.asarray(member.sum(axis=1)).ravel()
    lost = (removed >= total[None, :]) & (total[None, :] > 0)
    if lost.any():
        g, c = np.argwhere(lost)[0]
        raise ValueError(
            f"group {_name(labels[g])} holds every training row of class "
            f"{_name(a.classes[c])}: with the model's unpenalised intercept, the "
            "objective without the group has no minimum (that class's "
            "intercept runs off to minus infinity), so its influence is "
            "undefined. Leave some of the class's rows in the group out of it, "
            "or use a model that penalises its intercept."
        )


def _scale_without(est, keep):
    """Row scales ``s_j`` of the objective without the rows not kept.

    Under ``class_weight="balanced"`` the removal re-weights every kept row
    of the classes it thins, exactly as scikit-learn would on the subset.
    """
    s = est._s * keep
    rw = est._adapter.reweighting
    if rw is not None:
        w = est._w_train
        ratio = rw.factors(est._y, w * keep) / rw.factors(est._y, w)
        s = s * ratio[rw.index(est._y)]
    return s


#: Groups of at most this many rows x outputs take their first Newton step
#: by the Woodbury identity (one solve per row and output with the full-data
#: factor, and a dense system of that size), the others by preconditioned CG.
WOODBURY_MAX_RANK = 64


def _woodbury_step(est, rows):
    """First Newton step without ``rows`` by Woodbury, from the full factor.

    ``H_-G = H - U C U'`` with ``U`` the columns ``e_k (x) z_j`` of the
    group's rows and ``C = blockdiag(s_j D_j)``; the step is
    ``H_-G^-1 U w = H^-1 U (I - C A)^-1 w`` with ``A = U' H^-1 U`` and
    ``w`` the rows' ``s_j g_j`` (the row formula of :mod:`._newton`, for a
    block of rows).
    """
    a = est._adapter
    K = a.n_outputs
    Zg = est._Z[rows]
    grad, hess = a.pointwise_grad_hess(est._y[rows], est._raw[rows])
    m = len(rows)
    eye = np.eye(K)
    # Columns ordered (row, output): e_k (x) z_j.
    U = kron_rows(np.tile(eye, (m, 1)), Zg[np.repeat(np.arange(m), K)]).T
    Y = est._solver.solve(U)
    A = U.T @ Y
    C = np.zeros((m * K, m * K))
    for i in range(m):
        C[i * K:(i + 1) * K, i * K:(i + 1) * K] = est._s[rows[i]] * hess[i]
    w = (est._s[rows][:, None] * grad).ravel()
    CA = C @ A
    # H_-G is positive definite iff every eigenvalue of C A (those of
    # C^1/2 A C^1/2: real, >= 0 for convex losses) is below 1.
    if m and np.max(np.linalg.eigvals(CA).real) >= 1 - 1e-10:
        return None
    return Y @ np.linalg.solve(np.eye(m * K) - CA, w)


def _not_identifiable(label, step):
    return ValueError(
        f"group {_name(label)}: the objective without its rows has no unique "
        f"minimum (its Hessian is not positive definite at Newton step {step}: "
        "the rows left do not determine every parameter), so its influence is "
        "undefined. Set damping > 0 or use a model with a penalty."
    )


#: Groups whose Newton steps are solved together, as the columns of one CG
#: run (their products in one pass, the preconditioner as one BLAS-3 solve).
GROUP_BLOCK = 32


class _GroupHessians:
    """``V[:, g] -> H_-G(theta_g) V[:, g]``: each column its group's Hessian.

    ``S`` (n, m) holds each group's row scales (0 on its rows), ``hess``
    (n, m, K, K) each row's output Hessian at the group's parameters: the
    m products cost one pass over the rows as matrix products.
    """

    def __init__(self, Z, S, hess, penalty):
        self.Z, self.S, self.hess, self.penalty = Z, S, hess, penalty

    def __call__(self, V, cols):
        Z, S, hess = self.Z, self.S[:, cols], self.hess[:, cols]
        n, K, m = Z.shape[0], hess.shape[2], V.shape[1]
        p = V.shape[0] // K
        # One product with Z for every output and column: (p, K m).
        ZV = np.asarray(Z @ V.reshape(K, p, m).transpose(1, 0, 2).reshape(p, K * m))
        HZV = np.einsum("ngkl,nlg->nkg", hess, ZV.reshape(n, K, m))
        HZV *= S[:, None, :]
        out = np.asarray(Z.T @ HZV.reshape(n, K * m))  # (p, K m)
        out = out.reshape(p, K, m).transpose(1, 0, 2).reshape(V.shape)
        return out + self.penalty[:, None] * V


class _Inverse:
    """Preconditioner from a dense inverse: one GEMM (against the two
    triangular solves of a Cholesky factor, about twice as fast here)."""

    def __init__(self, inverse):
        self.inverse = inverse

    def solve(self, R):
        return self.inverse @ R


def _pointwise(est, Theta):
    """Gradients (n, m, K) and Hessians (n, m, K, K) of the rows' losses at
    each of the parameter rows of Theta (m, n_params)."""
    a = est._adapter
    K, m = a.n_outputs, Theta.shape[0]
    n = est._Z.shape[0]
    raw = np.asarray(est._Z @ Theta.reshape(m * K, -1).T).reshape(n * m, K)
    grad, hess = a.pointwise_grad_hess(np.repeat(est._y, m), raw)
    return grad.reshape(n, m, K), hess.reshape(n, m, K, K)


def _newton_block(est, Theta, S, offset, labels, exact):
    """One Newton step of each group of the block, from the rows of Theta."""
    a = est._adapter
    Z, K = est._Z, a.n_outputs
    grad, hess = _pointwise(est, Theta)
    GS = grad * S[:, :, None]
    Grad = np.stack([np.asarray(Z.T @ GS[:, :, k]) for k in range(K)]).reshape(
        -1, Theta.shape[0])
    Grad += a.penalty[:, None] * Theta.T - offset[:, None]
    Grad += np.reshape(a.linear, (-1, 1))  # an l1 penalty's, on the active set
    op = HessianOperator(a.n_params, _GroupHessians(Z, S, hess, a.penalty),
                         columnwise=True)
    # Separate recursions per column (block=False): each has its own operator.
    pre = None
    if exact:
        inverse = getattr(est._solver, "_inverse", None)  # the Newton fit's
        pre = est._solver if inverse is None else _Inverse(inverse)
    solver = CGSolver(damping=est.damping, tol=est.tol, block=False,
                      preconditioner=pre)
    solver.fit(op, null_space=a.null_space())
    return solver.solve(Grad).T


def newton_thetas(est, masks, labels, n_steps):
    """Parameters after ``n_steps`` Newton steps of each ``J_-G``: (n_groups,
    n_params).

    Groups of at most ``WOODBURY_MAX_RANK`` rows x outputs take their first
    step by Woodbury; every other step is solved by CG, ``GROUP_BLOCK``
    groups at a time.
    """
    a = est._adapter
    n_groups = masks.shape[0]
    offset = a.objective_gradient(est._Z, est._y, est._s)  # ~0 at a minimum
    exact = est.method_ == "direct"
    keep = 1.0 - masks.toarray().T.astype(np.float64)  # (n, n_groups)
    Theta = np.repeat(est.theta_[None], n_groups, axis=0)
    left = np.full(n_groups, n_steps)
    sizes = np.diff(masks.indptr)
    if exact and a.reweighting is None:
        for g in np.flatnonzero(sizes * a.n_outputs <= WOODBURY_MAX_RANK):
            rows = masks.indices[masks.indptr[g]:masks.indptr[g + 1]]
            step = _woodbury_step(est, rows)
            if step is None:
                raise _not_identifiable(labels[g], 1)
            Theta[g] += step
            left[g] -= 1
    while np.any(left > 0):
        todo = np.flatnonzero(left > 0)
        for start in range(0, todo.size, GROUP_BLOCK):
            blk = todo[start:start + GROUP_BLOCK]
            S = np.column_stack([_scale_without(est, keep[:, g]) for g in blk])
            try:
                Theta[blk] -= _newton_block(est, Theta[blk], S, offset, labels, exact)
            except ValueError as exc:
                if "not positive definite" not in str(exc):
                    raise
                # Which group: each alone.
                for i, g in enumerate(blk):
                    try:
                        _newton_block(est, Theta[[g]], S[:, [i]], offset, labels,
                                      exact)
                    except ValueError as one:
                        raise _not_identifiable(
                            labels[g], n_steps - left[g] + 1) from one
                raise
        left[todo] -= 1
    return Theta


def newton_loss_changes(est, Z_test, y_test, thetas):
    """Exact test-loss changes at each group's parameters, (n_test, n_groups)."""
    a = est._adapter
    raw = a.raw_prediction(Z_test)  # (n_test, K)
    n, K = raw.shape
    m = thetas.shape[0]
    moved = np.asarray(Z_test @ thetas.reshape(m * K, -1).T).reshape(n, m, K)
    shifts = (moved - raw[:, None, :]).transpose(0, 2, 1)  # (n_test, K, m)
    return a.loss.loss_change(y_test, raw, np.ascontiguousarray(shifts))
