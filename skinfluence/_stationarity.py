"""Is theta-hat a minimiser of the objective influence is taken on?

Influence functions linearise around a minimiser ``θ*`` of the training
objective J. At fitted parameters ``θ̂`` off it, refitting without row j
moves the parameters by ``(θ* − θ̂) + H⁻¹ s_j ∇ℓ_j``: the first term, the
Newton step ``H⁻¹ ∇J(θ̂)``, is in every actual leave-one-out change and in
none of the estimates. The check compares the two in the metric of H,

    offset  = sqrt(∇J' H⁻¹ ∇J),
    typical = sqrt(mean_j s_j² ∇ℓ_j' H⁻¹ ∇ℓ_j)   (over a sample of rows),

a ratio free of the units of features, targets and weights and of n: a
wrong ``sample_weight`` or a model trained on other rows gives a ratio
around ``sqrt(n)`` times the weights' relative error at any n, while
a solver converged to its tolerance gives a ratio well below one.

Models fitted with the non-smooth hinge are checked through their
optimality condition, ``0 ∈ ∂J(θ̂)``: the gradient is the subgradient of
least norm, the rows on the margin (``|m_j − 1| <= MARGIN_TOL``) taking any
share ``α_j ∈ [0, 1]`` of their hinge gradient.
"""

import copy
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.optimize import lsq_linear

from .models._glm import kron_rows
from .solvers import CGSolver, DualSolver

#: Largest offset / typical ratio accepted without a warning. Measured on
#: bundled data (ratio): LogisticRegression(tol=1e-10) 6e-5, default tol
#: 0.68 (breast cancer), 9.3 (digits, 10 classes); LinearSVC 0.09,
#: hinge 1e-13; SGDClassifier and SGDRegressor defaults 11 to 7700; trained
#: on the other half of the rows 29 to 39; sample weights U(0.5, 1.5) at
#: fit but not given, 2.0 (80 rows) and 16 (2000 rows).
STATIONARITY_RATIO = 1.0
#: Rows sampled for the typical row's influence (exact solvers).
N_ROWS = 32
#: Rows sampled where the check iterates (cg to ``CHECK_TOL``).
N_ROWS_ITERATIVE = 16
#: Relative residual of the check's cg.
CHECK_TOL = 1e-3
#: Margins this close to 1 count as on the hinge's kink.
MARGIN_TOL = 1e-3


def hinge_subgradient(adapter, Z, y_enc, s):
    """The least-norm element of ``∂J(θ̂)`` for a (non-smooth) hinge model."""
    raw = adapter.raw_prediction(Z)
    # Sum-form J = sum_j s_j sum_k l(raw_jk) + 1/2 θ'Λθ: rows off the kinks
    # take their whole gradient, rows on one a share alpha of its jump.
    fixed, on, direction = adapter.loss.subgradient_parts(y_enc, raw, MARGIN_TOL)
    fixed = fixed * s[:, None]
    g = (np.asarray(Z.T @ fixed).T.ravel() + adapter.penalty * adapter.theta)
    rows, ks = np.nonzero(on)
    if rows.size == 0:
        return g
    # Columns: each kink's jump of the gradient, s d z, in the (k, feature)
    # layout.
    K, p = raw.shape[1], Z.shape[1]
    Zr = Z[rows]
    Zr = Zr.toarray() if sp.issparse(Zr) else np.asarray(Zr)
    A = np.zeros((K * p, rows.size))
    for k in range(K):
        sel = ks == k
        A[k * p:(k + 1) * p, sel] = (direction[rows[sel], k] * s[rows[sel]]) * Zr[sel].T
    alpha = lsq_linear(A, -g, bounds=(0.0, 1.0)).x
    return g + A @ alpha


def _check_solver(solver):
    """A solver for the check's quadratic forms, and how many rows it takes.

    Exact solvers serve as they are. Iterative ones are replaced by cg to
    ``CHECK_TOL`` on the same operator (cg's own preconditioner kept): a
    quadratic form ``b'A^-1 b`` from an iterate of relative residual r is
    within ``cond(A) r^2`` of exact, far inside the check's margin, at a
    fraction of the iterations (LiSSA would run its whole depth, Arnoldi
    drop what lies outside its eigenvectors).
    """
    if isinstance(solver, CGSolver):
        check = copy.copy(solver)
        check.tol, check.info_ = CHECK_TOL, dict(solver.info_)  # its own record
    elif hasattr(solver, "op_") and not isinstance(solver, DualSolver):
        check = CGSolver(damping=solver.damping, tol=CHECK_TOL).fit(
            solver.op_, null_space=solver.null_space_)
    else:
        return solver, N_ROWS
    return check, N_ROWS_ITERATIVE


def stationarity_ratio(adapter, solver, Z, y_enc, s, grad, coupling=None):
    """``offset / typical`` of the module docstring, and both figures.

    ``coupling``: ``(c, u, delta)`` of a scale fitted beside theta
    (HuberRegressor's sigma; ``GLMEngine._scale_coupling``), whose gradient
    components join the quadratic forms through the Schur complement,
    ``b' H^-1 b = b_f' A^-1 b_f + (b_s - u' b_f)^2 / delta``.
    """
    if adapter.smooth:
        g = adapter.objective_gradient(Z, y_enc, s)
    else:
        g = hinge_subgradient(adapter, Z, y_enc, s)
    n = Z.shape[0]
    solver, n_rows = _check_solver(solver)
    rows = np.sort(np.random.RandomState(0).permutation(n)[:n_rows])
    W = kron_rows(s[rows, None] * grad[rows], Z[rows]).T  # (n_params, m)
    B = np.column_stack([g, W])
    with warnings.catch_warnings():
        # The solver's accuracy is not the question here (and cg to
        # CHECK_TOL is accurate enough for it).
        warnings.simplefilter("ignore")
        X = solver.solve(B)
    quad = np.einsum("ij,ij->j", B, X)
    if coupling is not None:
        _, u, delta = coupling
        q = adapter.scale_terms(y_enc, adapter.raw_prediction(Z))[0]
        b_s = np.r_[s @ q, s[rows] * q[rows]]
        quad = quad + (b_s - u @ B) ** 2 / delta
    offset = float(np.sqrt(max(quad[0], 0.0)))
    typical = float(np.sqrt(max(np.mean(quad[1:]), 0.0)))
    return offset / max(typical, 1e-300), offset, typical
