"""Newton-step leave-one-out estimates for GLMs.

Leaving row j out of ``J`` and taking one Newton step from theta-hat gives::

    theta_{-j} - theta = (H - s_j D_j (x) z_j z_j')^-1 s_j (g_j (x) z_j)
                       = H^-1 (I_K (x) z_j) v_j,
    v_j = (I_K - s_j D_j A_jj)^-1 s_j g_j,
    A_jj = (I_K (x) z_j)' H^-1 (I_K (x) z_j)            (K x K)

by the Woodbury identity (Sherman-Morrison for K = 1, where
``v_j = s_j g_j / (1 - h_j)`` with the leverage ``h_j = s_j d_j z_j' H^-1 z_j``;
Pregibon 1981).  For least squares the step is the exact minimiser.  The
first-order influence function is the same with ``v_j = s_j g_j``.
"""

import warnings

import numpy as np
from sklearn.utils import gen_batches

from .models._glm import kron_rows
from .utils._compat import get_chunk_n_rows


def diag_blocks(solver, Z, K, batch_size=None):
    """``A_jj`` for every row of Z, shape (n_rows, K, K), in row batches.

    With the primal direct solver this costs ``n p^2`` from ``H^-1``; the
    dual one works from its kernel; an iterative one solves for every
    ``e_l (x) z_j`` (K per row), in batches whose right-hand sides and the
    solver's work arrays (about seven copies: cg's residuals, directions,
    products) fit in scikit-learn's ``working_memory``.
    """
    if hasattr(solver, "diag_blocks"):  # the dual solver, from its kernel
        return solver.diag_blocks(Z)
    n, p = Z.shape
    if batch_size is None:
        copies = 2 if hasattr(solver, "inverse") else 7 * K
        batch_size = get_chunk_n_rows(row_bytes=8 * copies * K * p, max_n_rows=n)
    A = np.empty((n, K, K))
    if hasattr(solver, "inverse"):
        # With H^-1 at hand each K x K block costs n p^2: far less than
        # solving for every e_l (x) z_j.
        P = solver.inverse().reshape(K, p, K, p)
        for rows in gen_batches(n, batch_size):
            Zc = Z[rows]
            Zd = Zc.toarray() if hasattr(Zc, "toarray") else Zc
            for k in range(K):
                for m in range(k, K):
                    A[rows, k, m] = np.einsum("jf,jf->j", Zd @ P[k, :, m, :], Zd)
                    A[rows, m, k] = A[rows, k, m]
        return A
    for rows in gen_batches(n, batch_size):
        Zc = Z[rows]
        Zd = Zc.toarray() if hasattr(Zc, "toarray") else Zc
        m = Zd.shape[0]
        # Right-hand sides e_l (x) z_j for every l and j in the batch.
        B = np.zeros((K, p, K, m))
        for l in range(K):
            B[l, :, l, :] = Zd.T
        Y = solver.solve(B.reshape(K * p, K * m)).reshape(K, p, K, m)
        # A[j, k, l] = z_j' Y[k-block, (l, j)]
        A[rows] = np.einsum("jf,kflj->jkl", Zd, Y)
    return A


def newton_weights(A, s, grad, hess, rhs=None):
    """``v_j = (I - s_j D_j A_jj)^-1 s_j g_j`` for every row, shape (n, K).

    ``rhs`` replaces ``s_j g_j`` where the left-out row also reweights the
    others (``class_weight="balanced"``).
    """
    sg = s[:, None] * grad if rhs is None else rhs
    K = grad.shape[1]
    if K == 1:
        leverage = s * hess[:, 0, 0] * A[:, 0, 0]
        denom = 1.0 - leverage
        _warn_full_leverage(denom)
        return sg / denom[:, None]
    M = np.eye(K)[None] - s[:, None, None] * np.einsum("jkl,jlm->jkm", hess, A)
    try:
        return np.linalg.solve(M, sg[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError as exc:  # pragma: no cover - degenerate data
        raise ValueError(
            "A training row determines some parameters on its own (leverage 1): "
            "leaving it out makes the model unidentifiable, so estimate='newton' "
            "is undefined. Use estimate='influence' or set damping > 0."
        ) from exc


def _warn_full_leverage(denom):
    bad = np.flatnonzero(denom <= 1e-10)
    if bad.size:
        warnings.warn(
            f"{bad.size} training row(s) have leverage 1 (e.g. row {bad[0]}): "
            "leaving one out makes the model unidentifiable, so its Newton "
            "estimate is infinite. Use estimate='influence' or damping > 0.",
            RuntimeWarning,
            stacklevel=3,
        )


def param_shifts(solver, Z, W):
    """``H^-1 (w_j (x) z_j)`` for every row, shape (n_rows, n_params).

    Solved in row batches whose right-hand sides and the solver's work
    arrays fit in scikit-learn's ``working_memory`` (the result itself is
    the size the caller asked for).
    """
    n, K = W.shape
    n_params = K * Z.shape[1]
    copies = 2 if hasattr(solver, "inverse") or hasattr(solver, "diag_blocks") else 7
    batch = get_chunk_n_rows(row_bytes=8 * copies * n_params, max_n_rows=n)
    out = np.empty((n, n_params))
    for rows in gen_batches(n, batch):
        out[rows] = solver.solve(kron_rows(W[rows], Z[rows]).T).T
    return out
