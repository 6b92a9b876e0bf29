"""Perturbation influence: how a test loss moves when a training feature moves.

Koh & Liang's ``I_pert,loss`` for GLMs.  Nudging feature f of training row j
moves the stationarity condition ``grad J(theta) = 0`` of the objective
``J = sum_j s_j l(y_j, W z_j) + 1/2 theta' Lambda theta`` by the derivative
of row j's gradient ``s_j g_j (x) z_j`` with respect to ``x_jf``::

    d theta / d x_jf = -s_j H^-1 [ (D_j W[:, f]) (x) z_j + g_j (x) e_f ]

with ``g_j = dl/draw`` (K,) and ``D_j = d^2 l/draw^2`` (K, K).  With the rows
``F_i = H^-1 grad L_i`` of the test losses, reshaped ``P_i`` (K, p'), the
entry for (test row i, training row j, feature f) is::

    -s_j ( sum_kl (P_i[k] . z_j) D_j[k, l] W[l, f] + sum_k P_i[k, f] g_j[k] )

computed per chunk of training rows; ``z_j`` enters only through the dot
products ``P_i[k] . z_j``, so sparse features stay sparse.
"""

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.utils import gen_batches
from sklearn.utils.parallel import Parallel, delayed

from ._scoring import _sort_top, _top_k
from .utils._compat import get_chunk_n_rows


def perturbation_influence(estimator, X, y, *, top_k=None):
    """Koh & Liang's I_pert,loss for every (test row, training row, feature).

    How each test row's loss changes, to first order, per unit increase of
    one feature of one training row when the model is refitted.

    Parameters
    ----------
    estimator : InfluenceEstimator
        A fitted influence estimator wrapping a GLM (linear, logistic or
        smooth-hinge SVM model, or a Pipeline ending in one).
    X : {array-like, sparse matrix} of shape (n_test, n_features_in)
        Test rows, raw (before any Pipeline step).
    y : array-like of shape (n_test,)
        Their targets.
    top_k : int, default=None
        If given, return only the ``top_k`` (training row, feature) pairs of
        largest derivative for each test row (``-top_k``: the most negative),
        without holding the full array. ``abs(top_k)`` must not exceed
        ``n_train * n_features``. On sparse input (text, say) only the
        features present in a training row (its stored entries) are
        candidates: nudging a word a document does not contain is not a
        change of that document, although the derivative exists (the full
        array, without ``top_k``, holds it for every feature); then
        ``abs(top_k)`` must not exceed the training rows' stored entries.

    Returns
    -------
    influence : ndarray of shape (n_test, n_train, n_features)
        Entry ``[i, j, f]`` is ``dL(z_i; θ̂) / dx_jf``: the rate of change of
        test row i's loss when feature f of training row j increases and the
        model is refitted, in the test loss's units (squared error, log-loss,
        smooth hinge) per unit of the feature. Positive: increasing the
        feature raises the test loss (hurts); negative: it lowers it.
        ``n_features`` is the number of features the model (the last step of
        a Pipeline) sees, after the Pipeline's fixed transforms; the
        intercept is not a feature.
    (rows, features, values) : tuple of ndarrays of shape (n_test, abs(top_k))
        When ``top_k`` is given: the training rows, the features and the
        derivatives of the selected pairs, largest first (``top_k > 0``) or
        most negative first (``top_k < 0``).

    Notes
    -----
    With the training objective ``J(θ) = Σ_j s_j ℓ(y_j, W z_j) + ½ θᵀΛθ``,
    ``z_j = [x_j, 1]`` and ``θ`` the rows of ``W`` (K, p') flattened,
    stationarity gives the refit's parameter derivative::

        dθ/dx_jf = −s_j H⁻¹ [ (D_j W[:, f]) ⊗ z_j + g_j ⊗ e_f ]

    where ``g_j`` (K,) and ``D_j`` (K, K) are the first and second
    derivatives of ``ℓ`` in the raw predictions (the Hessian's scale). With
    ``F_i = H⁻¹ ∇_θ L(z_i)`` reshaped as ``P_i`` (K, p')::

        I[i, j, f] = −s_j ( Σ_{k,l} (P_i[k] · z_j) D_j[k, l] W[l, f]
                            + Σ_k P_i[k, f] g_j[k] )

    Class weights (also ``"balanced"``) depend on labels only and do not
    move with a feature. A perturbation is infinitesimal, so
    ``estimate="newton"`` has no separate meaning here: both estimates give
    this derivative. For models fitted with the hinge loss the derivative is
    that of the smooth hinge of temperature ``t``.

    References
    ----------
    .. [1] P. W. Koh and P. Liang, "Understanding Black-box Predictions via
       Influence Functions", ICML 2017, sec. 2.2.
    """
    a = estimator._adapter
    if getattr(a, "family", None) != "glm":
        raise ValueError(
            "kind='perturbation' is implemented for linear models (linear, "
            "logistic, smooth-hinge SVM) only; got a model of the "
            f"{getattr(a, 'family', None)!r} family."
        )
    engine = estimator._engine
    Z_test, y_test, raw_test = engine._prepare(estimator, X, y)
    K = a.n_outputs
    W = a.coef  # (K, n_features): the intercept column is not a feature
    n_features = W.shape[1]
    n_train = estimator.n_train_
    n_test = Z_test.shape[0]
    if top_k is not None:
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k == 0:
            raise ValueError(
                "top_k must be a non-zero integer (negative for the most "
                f"negative derivatives) or None; got {top_k!r}."
            )
        if abs(top_k) > n_train * n_features:
            raise ValueError(
                f"abs(top_k)={abs(top_k)} exceeds the number of (training "
                f"row, feature) pairs n_train_ * n_features = {n_train} * "
                f"{n_features} = {n_train * n_features}."
            )
        if sp.issparse(estimator._Z):
            present = estimator._Z[:, :n_features].count_nonzero()
            if abs(top_k) > present:
                raise ValueError(
                    f"abs(top_k)={abs(top_k)} exceeds the {present} features "
                    "present in the (sparse) training rows, the only "
                    "candidates on sparse input.")
        top_k = int(top_k)

    F = engine._left(estimator, Z_test, a.user_grad(y_test, raw_test))
    P = F.reshape(n_test, K, -1)  # P[i, k] = block k of H^-1 grad L_i
    g, D = a.pointwise_grad_hess(estimator._y, estimator._raw)
    s = estimator._s
    Z = estimator._Z

    # Per training row a chunk holds (P_i[k] . z_j), its product with D_j, the
    # two (n_features,) terms and their sum, plus top-k's selection keys.
    row_bytes = 8 * n_test * (2 * K + 5 * n_features)
    chunk = get_chunk_n_rows(row_bytes=row_bytes, max_n_rows=n_train)
    parallel = Parallel(n_jobs=estimator.n_jobs, verbose=estimator.verbose,
                        prefer="threads", return_as="generator")
    batches = list(gen_batches(n_train, chunk))
    jobs = (
        delayed(_perturb_chunk)(P, Z[b], s[b], g[b], D[b], W, b.start, top_k)
        for b in batches
    )
    if top_k is None:
        out = np.empty((n_test, n_train, n_features))
        for b, block in zip(batches, parallel(jobs)):
            out[:, b] = block
        return out
    idx = np.empty((n_test, 0), dtype=np.intp)
    vals = np.empty((n_test, 0))
    for b_idx, b_vals in parallel(jobs):
        idx = np.hstack([idx, b_idx])
        vals = np.hstack([vals, b_vals])
        idx, vals = _top_k(vals, top_k, indices=idx)
    idx, vals = _sort_top(idx, vals, top_k)
    return idx // n_features, idx % n_features, vals


def _perturb_chunk(P, Z, s, g, D, W, start, top_k):
    """Derivatives for one chunk of training rows: (n_test, n_chunk, n_features).

    With ``top_k`` the chunk's own top entries ``(flat indices, values)``
    instead, flat index ``j * n_features + f`` over all training rows.
    """
    n_test, K, _ = P.shape
    # A[i, j, k] = P_i[k] . z_j
    A = np.stack(
        [np.asarray(Z @ P[:, k].T).T if sp.issparse(Z) else P[:, k] @ Z.T
         for k in range(K)],
        axis=2,
    )
    AD = np.einsum("ijk,jkl->ijl", A, D)
    out = AD @ W  # (n_test, n_chunk, n_features)
    n_features = W.shape[1]
    out += np.einsum("jk,ikf->ijf", g, P[:, :, :n_features])
    out *= -s[None, :, None]
    if top_k is None:
        return out
    if sp.issparse(Z):
        # Only the features present in a row are candidates (see
        # perturbation_influence).
        absent = Z[:, :n_features].toarray() == 0
        out[:, absent] = -np.inf if top_k > 0 else np.inf
    return _top_k(out.reshape(n_test, -1), top_k, offset=start * n_features)
