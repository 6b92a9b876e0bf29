"""Exact hinge-loss linear SVMs, the ground truth for smooth-hinge influence.

liblinear's dual coordinate descent for ``LinearSVC(loss="hinge")`` often
stops at ``max_iter`` short of the optimum (and SGD never reaches it), which
makes leave-one-out differences noisy; this solver reaches the optimum to
rounding error. Written here because no dependency offers an exact QP.

Both solve the dual box QP ``min_a 1/2 |A'a|^2 - c'a`` over
``0 <= a <= upper`` (rows of A are ``y_j z_j``, and ``c = 1``, for the hinge;
for the epsilon-insensitive loss of support vector regression, two rows per
training row, ``+-z_j`` with ``c = +-y_j - epsilon``), with
``sum_j y_j a_j = 0`` when the intercept is not penalised, by a feasible
active-set method started near the optimum (L-BFGS-B, or the full fit for a
leave-one-out refit). Each step solves the free rows' equations exactly, so
the result is the optimum to rounding error, and a row with ``a_j = 0``
leaves it unchanged exactly.
"""

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits


def _dual_lbfgs(A, upper, c):
    """Approximate solution of the box QP without equality, by L-BFGS-B."""

    def fun(a):
        w = A.T @ a
        return 0.5 * w @ w - c @ a, A @ w - c

    # Thousands of tiny products: BLAS threads only contend (40x slower on
    # a busy 2-core machine).
    with threadpool_limits(1, user_api="blas"):
        res = minimize(fun, np.zeros(A.shape[0]), jac=True, method="L-BFGS-B",
                       bounds=np.column_stack([np.zeros_like(upper), upper]),
                       options=dict(maxiter=5_000, maxcor=30, ftol=1e-13, gtol=1e-8))
    return res.x


def _balance(a, y_eq, upper):
    """Make ``y_eq @ a = 0`` inside the box, moving few entries (free ones first)."""
    a = a.copy()
    excess = y_eq @ a  # lower it: decrease a where y = +1, raise it where y = -1
    if excess < 0:
        a, y_eq = a, -y_eq
        excess = -excess
    free = (a > 0) & (a < upper)
    room = np.where(y_eq > 0, a, upper - a)  # how far each entry can go
    order = np.lexsort((~free,))  # free entries first
    take = np.minimum(room[order], np.maximum(0.0, excess - np.concatenate(
        [[0.0], np.cumsum(room[order])[:-1]])))
    a[order] -= np.sign(y_eq[order]) * take
    return np.clip(a, 0.0, upper)


def _box_qp_active_set(A, upper, a, c, y_eq=None, max_iter=10_000):
    """Minimise ``1/2 |A'a|^2 - c'a``, ``0 <= a <= upper`` (``y_eq'a = 0``).

    ``a`` must be feasible. Returns (a, bias, n_iter); bias is the multiplier
    of the equality (the unpenalised intercept), 0 without one.
    """
    n = len(a)
    at = np.zeros(n, dtype=np.int8)  # -1: a = 0, 1: a = upper, 0: free
    tiny = 1e-12 * max(float(upper.max()), 1e-300)
    at[a <= tiny] = -1
    at[a >= upper - tiny] = 1
    at[upper <= 0] = -1
    a = np.where(at == -1, 0.0, np.where(at == 1, upper, a))
    bias = 0.0
    for it in range(max_iter):
        free = np.flatnonzero(at == 0)
        grad = A @ (A.T @ a) - c  # dual gradient = margin - c
        if free.size:
            A_F = A[free]
            k = free.size
            B = A_F if y_eq is None else np.column_stack([A_F, y_eq[free]])
            U, sv, _ = np.linalg.svd(B, full_matrices=True)
            rank = int(np.sum(sv > 1e-10 * sv[0])) if sv.size else 0
            if k > rank:
                # A direction the objective is flat or falling along: follow it
                # to a bound, which frees one row fewer.
                step = U[:, -1] * (-1.0 if grad[free] @ U[:, -1] > 0 else 1.0)
                unbounded = True
            else:
                if y_eq is None:
                    step = np.linalg.solve(A_F @ A_F.T, -grad[free])
                else:
                    M = np.zeros((k + 1, k + 1))
                    M[:k, :k] = A_F @ A_F.T
                    M[:k, k] = M[k, :k] = y_eq[free]
                    sol = np.linalg.solve(M, np.append(-grad[free], 0.0))
                    step, bias = sol[:k], sol[k]
                unbounded = False
        else:
            step, unbounded = np.zeros(0), False
        if free.size and np.abs(step).max() > 0:
            # Ratio test: the longest feasible step, at most 1 when bounded.
            s_free = a[free]
            with np.errstate(divide="ignore", invalid="ignore"):
                lim = np.where(step < 0, -s_free / step,
                               np.where(step > 0, (upper[free] - s_free) / step,
                                        np.inf))
            j = int(np.argmin(lim))
            alpha = lim[j] if unbounded else min(1.0, lim[j])
            a[free] = s_free + alpha * step
            if unbounded or lim[j] <= 1.0:
                hit = free[j]
                at[hit] = -1 if step[j] < 0 else 1
                a[hit] = 0.0 if step[j] < 0 else upper[hit]
                continue
        # At the minimiser over the free rows: check the fixed rows' signs.
        grad = A @ (A.T @ a) - c
        if y_eq is not None:
            if free.size == 0:
                bias = _best_bias(grad, at, y_eq)
            grad = grad + y_eq * bias
        wrong = np.where(at == -1, np.maximum(0.0, -grad),
                         np.where(at == 1, np.maximum(0.0, grad), 0.0))
        wrong[upper <= 0] = 0.0
        j = int(np.argmax(wrong))
        if wrong[j] <= 1e-13 * max(1.0, np.abs(grad).max()):
            return a, bias, it
        at[j] = 0
    raise RuntimeError("active set did not settle")


def _best_bias(grad, at, y_eq):
    """Equality multiplier when no row is free: middle of its feasible range."""
    # a = 0 needs grad + y b >= 0; a = upper needs grad + y b <= 0.
    lo, hi = -np.inf, np.inf
    for state, sign in ((-1, 1.0), (1, -1.0)):
        g, y = grad[at == state], y_eq[at == state]
        # sign * (g + y b) >= 0
        pos = sign * y > 0
        if np.any(pos):
            lo = max(lo, np.max(-g[pos] / y[pos]))
        if np.any(~pos):
            hi = min(hi, np.min(-g[~pos] / y[~pos]))
    if np.isfinite(lo) and np.isfinite(hi):
        return 0.5 * (lo + hi)
    return lo if np.isfinite(lo) else (hi if np.isfinite(hi) else 0.0)


def _kkt_violation(A, upper, a, c, bias=0.0, y_eq=None):
    """Largest violation of the dual optimality conditions (0 at the optimum)."""
    g = A @ (A.T @ a) - c + (0.0 if y_eq is None else y_eq * bias)
    tol = 1e-12 * max(1.0, upper.max())
    lo, hi = a <= tol, a >= upper - tol
    viol = np.where(lo & hi, 0.0, np.where(lo, np.maximum(0.0, -g),
                    np.where(hi, np.maximum(0.0, g), np.abs(g))))
    box = max(np.maximum(0.0, -a).max(), np.maximum(0.0, a - upper).max())
    eq = 0.0 if y_eq is None else abs(y_eq @ a)
    return max(viol.max(), box, eq)


def _hinge_svm_exact(Z, y_pm, upper, *, c=None, free_intercept=False, a0=None):
    """Exact minimiser of ``1/2 |w|^2 + sum_j upper_j max(0, c_j - y_j (w.z_j + b))``.

    ``c = 1`` (the default) is the hinge. Z holds any penalised bias column;
    with ``free_intercept`` b is not penalised. ``a0`` warm-starts the dual.
    Returns (w, b, a).
    """
    c = np.ones(len(y_pm)) if c is None else c
    A = y_pm[:, None] * Z
    y_eq = y_pm if free_intercept else None
    if a0 is None:
        B = A
        if free_intercept:  # start from a stiff penalised bias column
            s = 10.0 * np.sqrt(np.mean(np.sum(Z**2, axis=1)))
            B = np.column_stack([A, s * y_pm])
        a0 = _dual_lbfgs(B, upper, c)
        if not free_intercept:  # rows clearly off the margin to their bound
            slack = A @ (A.T @ a0) - c
            a0 = np.where(slack > 1e-4, 0.0, np.where(slack < -1e-4, upper, a0))
    a = np.clip(a0, 0.0, upper)
    if free_intercept:
        a = _balance(a, y_pm, upper)
    a, b, _ = _box_qp_active_set(A, upper, a, c, y_eq)
    return A.T @ a, b, a


def hinge_refit(adapter, Z, y_enc, s, a0=None):
    """Exact fit of a hinge model's objective with row factors s.

    ``Z`` are the adapter's augmented features; the objective is the
    adapter's with the hinge itself, ``sum_j s_j hinge(m_j) + 1/2 theta'
    Lambda theta`` (binary classifiers), or with the epsilon-insensitive
    loss ``max(0, |y_j - raw_j| - epsilon)`` (support vector regression).
    Returns ``(theta, a)``, ``a`` the dual to warm-start the next refit from.
    """
    from .models._glm import EpsilonInsensitiveLoss

    Z = Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z)
    strength = adapter.penalty[0]
    if strength <= 0:
        raise ValueError("A hinge model without penalty has no unique optimum.")
    upper = s / strength  # the objective divided by the penalty strength
    if isinstance(adapter.loss, EpsilonInsensitiveLoss):
        # Each row is two hinges, one per side of the tube:
        # max(0, y - eps - raw) and max(0, raw - y - eps).
        eps = adapter.loss.epsilon
        n = len(y_enc)
        Z = np.vstack([Z, Z])
        y_pm = np.r_[np.ones(n), -np.ones(n)]
        c = np.r_[y_enc - eps, -y_enc - eps]
        upper = np.r_[upper, upper]
    else:
        y_pm = np.where(y_enc == 1, 1.0, -1.0)
        c = None
    if a0 is not None:
        a0 = np.where(upper > 0, a0, 0.0)
    if not adapter.fit_intercept:
        wv, _, a = _hinge_svm_exact(Z, y_pm, upper, c=c, a0=a0)
        return wv * 1.0, a
    bias_penalty = adapter.penalty[-1] / strength
    if bias_penalty > 0:  # liblinear: b = intercept_scaling * w_b
        scaling = 1.0 / np.sqrt(bias_penalty)
        Zs = Z.copy()
        Zs[:, -1] = scaling
        wv, _, a = _hinge_svm_exact(Zs, y_pm, upper, c=c, a0=a0)
        return np.r_[wv[:-1], scaling * wv[-1]], a
    wv, b, a = _hinge_svm_exact(Z[:, :-1], y_pm, upper, c=c, free_intercept=True,
                                a0=a0)
    return np.r_[wv, b], a
