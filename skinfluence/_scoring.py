"""Chunked, parallel scoring over training rows, with streaming top-k.

One module for every model family. Every score is ``finish(train.contract(L,
rows))``: L holds rows of ``H^-1`` applied to test gradients (or outputs'
gradients), ``train`` the training rows' gradients, factored for GLMs
(``W[j] (x) Z[j]``, :class:`FactoredRows`) or dense by chunks for torch
models (:class:`DenseRows`); ``finish`` turns raw-prediction shifts into
loss changes for the Newton estimate.  Work is split over training rows
in chunks sized by scikit-learn's ``working_memory`` and dispatched with
joblib (threads by default), so ``joblib.parallel_config(backend="dask")``
spreads it on a cluster.
With ``verbose > 0`` a progress bar over the chunks goes to stderr when tqdm
is installed; without it, joblib's own progress messages do.
"""

import sys

import numpy as np
from joblib import effective_n_jobs
from sklearn import get_config
from sklearn.utils import gen_batches
from sklearn.utils.parallel import Parallel, delayed

from .models._glm import right_contract
from .utils._array import to_numpy
from .utils._compat import get_chunk_n_rows


class NewtonLossChange:
    """Turn raw shifts (n_test * K, n_chunk) into exact test-loss changes."""

    def __init__(self, loss, y_test, raw_test):
        self.loss = loss
        self.y_test = y_test
        self.raw_test = raw_test

    def __call__(self, block):
        n_test, K = self.raw_test.shape
        shift = block.reshape(n_test, K, block.shape[1])
        return self.loss.loss_change(self.y_test, self.raw_test, shift)


class FactoredRows:
    """Training rows of a GLM: row j's gradient is ``W[j] (x) Z[j]``.

    Held factored, (n, K) weights and the (n, p) features, never as the
    (n, K p) gradients; a chunk's scores are one product per output
    (:func:`~skinfluence.models._glm.right_contract`).
    """

    def __init__(self, Z, W):
        self.Z, self.W = Z, W
        self.n = Z.shape[0]

    def row_bytes(self, n_params):
        return 8 * n_params  # dense, several outputs: its row w_j (x) z_j

    def contract(self, L, rows):
        return right_contract(L, self.Z[rows], self.W[rows])


class DenseRows:
    """Training rows known by their gradients, (n_rows, n_params) per chunk.

    ``grads(rows)`` returns the gradients of the rows in slice ``rows``
    (torch models: per-row autograd, or slices of a cached matrix, as
    tensors on the model's device, contracted there), of ``itemsize``
    bytes a float.
    """

    def __init__(self, n, grads, itemsize=8):
        self.n, self.grads, self.itemsize = n, grads, itemsize

    def row_bytes(self, n_params):
        return self.itemsize * n_params  # the chunk's gradients

    def contract(self, L, rows):
        return L @ self.grads(rows).T


def _block(L, train, rows, finish, sign, extra=None):
    # Scores leave the device here, a chunk at a time.
    out = to_numpy(train.contract(L, rows))
    if extra is not None:  # low-rank term: (E_left, E_right rows of the chunk)
        out += extra[0] @ extra[1].T
    if finish is not None:
        out = finish(out)
    return out if sign == 1 else -out


def _top_block(L, train, rows, finish, sign, extra, k):
    return _top_k(_block(L, train, rows, finish, sign, extra), k, offset=rows.start)


def _top_k(values, k, offset=0, indices=None):
    """The |k| largest (k > 0) or smallest (k < 0) entries of each row."""
    n = values.shape[1]
    m = min(abs(k), n)
    key = -values if k > 0 else values
    part = np.argpartition(key, m - 1, axis=1)[:, :m] if m < n else (
        np.broadcast_to(np.arange(n), values.shape).copy())
    vals = np.take_along_axis(values, part, axis=1)
    idx = part + offset if indices is None else np.take_along_axis(indices, part, 1)
    return idx, vals


def _sort_top(idx, vals, k):
    order = np.argsort(-vals if k > 0 else vals, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(vals, order, 1)


def _tqdm():
    """tqdm's progress bar class, or None when it is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def score_train_rows(L, train, *, finish=None, sign=1, top_k=None, n_jobs=None,
                     verbose=0, n_out=None, extra=None, groups=None):
    """Scores of every test row against every training row, chunked.

    ``L`` (rows of ``H^-1`` applied to test gradients) against ``train``, a
    :class:`FactoredRows` (GLMs) or :class:`DenseRows` (torch models).
    ``extra = (E_left, E_right)`` adds the low-rank term ``E_left @ E_right.T``
    (shapes (L rows, R) and (n_train, R)) before ``finish``.

    Returns the (n_out, n_train) matrix, or ``(indices, values)`` of shape
    (n_out, |top_k|) sorted from the most helpful (top_k > 0) or the most
    harmful (top_k < 0), without holding the full matrix.

    With ``groups`` (a sparse 0/1 matrix (n_groups, n_train)), each chunk's
    scores are summed into the groups its rows belong to, and the
    (n_out, n_groups) sums are returned (``top_k`` then applies to them).
    """
    n_train = train.n
    n_out = L.shape[0] if n_out is None else n_out
    # Per training row a chunk holds L's product and the running sum over
    # outputs (2 L rows), its finished scores and their temporaries, and
    # the row's own gradient (or w_j (x) z_j).
    row_bytes = 8 * (2 * L.shape[0] + 2 * n_out) + train.row_bytes(L.shape[1])
    # The whole call stays within working_memory: each of the jobs that may
    # hold a chunk at once gets its share (at most n_jobs are dispatched).
    n_workers = max(1, effective_n_jobs(n_jobs))
    chunk = get_chunk_n_rows(
        row_bytes=row_bytes, max_n_rows=n_train,
        working_memory=get_config()["working_memory"] / n_workers,
    )
    batches = list(gen_batches(n_train, chunk))
    # verbose > 0: one tqdm bar over the chunks, else joblib's own messages.
    tqdm = _tqdm() if verbose else None
    # Chunks are BLAS and sparse products, which release the GIL: threads
    # share L (up to hundreds of MB) instead of shipping it to processes.
    # "prefer" is a soft hint: joblib.parallel_config(backend=...) wins.
    parallel = Parallel(n_jobs=n_jobs, verbose=0 if tqdm else verbose,
                        prefer="threads", return_as="generator",
                        pre_dispatch="n_jobs")

    def run(tasks):
        results = parallel(tasks)
        if tqdm is None:
            return results
        return tqdm(results, total=-(-n_train // chunk), file=sys.stderr,
                    desc=f"Scoring {n_train} training rows", unit="chunk")

    def part(b):
        return None if extra is None else (extra[0], extra[1][b])

    if groups is not None:
        groups = groups.tocsc()  # sliced by columns (training rows)
        sums = np.zeros((groups.shape[0], n_out))
        blocks = run(delayed(_block)(L, train, b, finish, sign, part(b))
                     for b in batches)
        for b, block in zip(batches, blocks):
            sums += groups[:, b] @ block.T
        return sums.T if top_k is None else top_k_columns(sums.T, top_k)
    if top_k is None:
        blocks = list(run(
            delayed(_block)(L, train, b, finish, sign, part(b)) for b in batches
        ))
        return blocks[0] if len(blocks) == 1 else np.hstack(blocks)
    idx = np.empty((n_out, 0), dtype=np.intp)
    vals = np.empty((n_out, 0))
    for b_idx, b_vals in run(
        delayed(_top_block)(L, train, b, finish, sign, part(b), top_k)
        for b in batches
    ):
        idx = np.hstack([idx, b_idx])
        vals = np.hstack([vals, b_vals])
        idx, vals = _top_k(vals, top_k, indices=idx)
    return _sort_top(idx, vals, top_k)


def top_k_columns(values, k):
    """``(indices, values)`` of each row's |k| largest (k > 0) or smallest
    entries, sorted, from a matrix held whole."""
    idx, vals = _top_k(values, k)
    return _sort_top(idx, vals, k)
