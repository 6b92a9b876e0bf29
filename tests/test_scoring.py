"""Chunked, parallel scoring: chunk size, n_jobs and backend change nothing.

Scores are computed over chunks of training rows sized by ``working_memory``
and dispatched with joblib; the results must be the same for one chunk or
many, serially or on two loky workers or a two-process Dask cluster, and
``verbose`` must show progress on stderr only when asked.
"""

import re
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from joblib import parallel_config
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceEstimator, _scoring

from ._cases import load

# (working_memory in MiB, n_jobs): one chunk serially, then many chunks.
ONE_CHUNK = (1024, None)
CHUNKINGS = [(0.02, None), (0.01, 2)]


def _model(**kwargs):
    return LogisticRegression(tol=1e-10, max_iter=10_000, **kwargs)


@pytest.fixture(scope="module")
def cases():
    """Fitted estimators: binary on dense X; three classes, class weights and
    the Newton estimate (a finishing step and a low-rank term) on sparse X."""
    Xtr, ytr, Xte, yte = load("cancer")
    binary = InfluenceEstimator(_model()).fit(Xtr, ytr)
    Dtr, dtr, Dte, dte = load("diabetes_3")
    Dtr, Dte = sp.csr_matrix(Dtr), sp.csr_matrix(Dte)
    newton = InfluenceEstimator(
        _model(class_weight="balanced"), estimate="newton"
    ).fit(Dtr, dtr)
    return {"binary": (binary, Xte, yte), "newton": (newton, Dte, dte)}


@pytest.fixture
def n_chunks(monkeypatch):
    """Records how many chunks each scoring call dispatches."""
    counts = []

    def spy(n, batch_size, **kwargs):
        counts.append(-(-n // batch_size))
        return _scoring_gen_batches(n, batch_size, **kwargs)

    _scoring_gen_batches = _scoring.gen_batches
    monkeypatch.setattr(_scoring, "gen_batches", spy)
    return counts


def _close(actual, desired):
    scale = np.max(np.abs(desired))
    assert_allclose(actual, desired, rtol=1e-12, atol=1e-12 * scale)


def _score_all(inf, X, y, working_memory, n_jobs):
    inf.set_params(n_jobs=n_jobs)
    try:
        with config_context(working_memory=working_memory):
            return (inf.score_influence(X, y), inf.score_influence(X, y, top_k=5),
                    inf.score_influence(X, y, top_k=-3), inf.transform(X))
    finally:
        inf.set_params(n_jobs=None)


@pytest.mark.parametrize("case", ["binary", "newton"])
def test_results_do_not_depend_on_chunk_size_or_n_jobs(cases, case, n_chunks):
    inf, X, y = cases[case]
    full, top, bottom, trans = _score_all(inf, X, y, *ONE_CHUNK)
    assert set(n_chunks) == {1}
    for working_memory, n_jobs in CHUNKINGS:
        n_chunks.clear()
        got = _score_all(inf, X, y, working_memory, n_jobs)
        assert min(n_chunks) > 3  # every call was split
        _close(got[0], full)
        for (idx, vals), (ref_idx, ref_vals) in zip(got[1:3], (top, bottom)):
            assert_array_equal(idx, ref_idx)
            _close(vals, ref_vals)
        _close(got[3], trans)


def test_dask_backend_matches_serial(cases, n_chunks):
    distributed = pytest.importorskip("dask.distributed")
    inf, X, y = cases["binary"]
    full, top, _, _ = _score_all(inf, X, y, 0.02, None)
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1,
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:
        inf.set_params(n_jobs=2)
        try:
            with (parallel_config(backend="dask"),
                  config_context(working_memory=0.02),
                  distributed.get_task_stream(client) as tasks):
                dask_full = inf.score_influence(X, y)
                dask_idx, dask_vals = inf.score_influence(X, y, top_k=5)
        finally:
            inf.set_params(n_jobs=None)
    assert min(n_chunks) > 3
    assert len(tasks.data) > 0  # the chunks ran on the cluster
    _close(dask_full, full)
    assert_array_equal(dask_idx, top[0])
    _close(dask_vals, top[1])


def _run_verbose(inf, X, y, verbose):
    inf.set_params(verbose=verbose)
    try:
        with config_context(working_memory=0.05):
            inf.score_influence(X, y)
            inf.score_influence(X, y, top_k=2)
    finally:
        inf.set_params(verbose=0)


def test_verbose_shows_progress_on_stderr(cases, capfd):
    pytest.importorskip("tqdm")
    inf, X, y = cases["binary"]
    capfd.readouterr()
    _run_verbose(inf, X, y, 0)
    assert capfd.readouterr() == ("", "")
    _run_verbose(inf, X, y, 1)
    out, err = capfd.readouterr()
    assert out == ""
    assert f"Scoring {inf.n_train_} training rows" in err
    # Several chunks, counted to the end.
    done = re.findall(r"\b(\d+)/(\d+) \[", err)
    assert done and done[-1][0] == done[-1][1] and int(done[-1][1]) > 1


def test_verbose_without_tqdm_falls_back_to_joblib(cases, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails
    inf, X, y = cases["binary"]
    capfd.readouterr()
    _run_verbose(inf, X, y, 0)
    assert capfd.readouterr() == ("", "")
    _run_verbose(inf, X, y, 1)
    out, err = capfd.readouterr()
    assert out == ""
    assert "Parallel(n_jobs=" in err and "Scoring" not in err
