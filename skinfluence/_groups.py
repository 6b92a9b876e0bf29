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
    bal = est._adapter.balanced
    if bal is not None:
        w = est._w_train
        ratio = bal.factors(est._y, w * keep) / bal.factors(est._y, w)
        s = s * ratio[est._y]
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


def newton_thetas(est, masks, labels, n_steps):
    """Parameters after ``n_steps`` Newton steps of each ``J_-G``: (n_groups,
    n_params)."""
    a = est._adapter
    Z, y = est._Z, est._y
    theta0 = est.theta_
    offset = a.objective_gradient(Z, y, est._s)  # ~0 at an exact minimum
    null_space = a.null_space()
    exact = est.method_ == "direct"
    out = np.empty((masks.shape[0], theta0.size))
    for g in range(masks.shape[0]):
        keep = np.ones(Z.shape[0])
        keep[masks.indices[masks.indptr[g]:masks.indptr[g + 1]]] = 0.0
        s = _scale_without(est, keep)
        theta = theta0.copy()
        rows = masks.indices[masks.indptr[g]:masks.indptr[g + 1]]
        first = 0
        if (exact and est._adapter.balanced is None
                and rows.size * a.n_outputs <= WOODBURY_MAX_RANK):
            step = _woodbury_step(est, rows)
            if step is None:
                raise _not_identifiable(labels[g], 1)
            theta += step
            first = 1
        for step in range(first, n_steps):
            at = a.with_theta(theta)
            _, hess = at.pointwise_grad_hess(y, at.raw_prediction(Z))
            grad = at.objective_gradient(Z, y, s) - offset
            op = at.hessian_operator(Z, s, hess)
            solver = CGSolver(damping=est.damping, tol=est.tol,
                              preconditioner=est._solver if exact else None)
            try:
                solver.fit(op, null_space=null_space)
                theta -= solver.solve(grad)
            except ValueError as exc:
                if "not positive definite" not in str(exc):
                    raise
                raise _not_identifiable(labels[g], step + 1) from exc
        out[g] = theta
    return out


def newton_loss_changes(est, Z_test, y_test, thetas):
    """Exact test-loss changes at each group's parameters, (n_test, n_groups)."""
    a = est._adapter
    raw = a.raw_prediction(Z_test)  # (n_test, K)
    K = raw.shape[1]
    shifts = np.stack([a.with_theta(t).raw_prediction(Z_test) - raw for t in thetas],
                      axis=2)
    return a.loss.loss_change(y_test, raw, shifts.reshape(raw.shape[0], K, -1))
