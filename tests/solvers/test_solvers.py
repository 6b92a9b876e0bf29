"""Iterative solvers against the direct one, and what they report."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skinfluence import InfluenceEstimator
from skinfluence.solvers import (
    ArnoldiSolver,
    CGSolver,
    HessianOperator,
    LiSSASolver,
)

from .._cases import CASES, fitted

EXACT = [("cg", {"tol": 1e-12}), ("arnoldi", {"solver_params": {"rank": 10**6}})]
SMOOTH_CASES = [c for c in CASES if "hinge" not in c[0]]


def _scores(model, data, sw, **kw):
    Xtr, ytr, Xte, yte = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # SGD's own fit
        inf = InfluenceEstimator(model, **kw).fit(Xtr, ytr, sample_weight=sw)
    return inf, inf.score_influence(Xte, yte)


@pytest.mark.parametrize("method, kw", EXACT, ids=[m for m, _ in EXACT])
@pytest.mark.parametrize("case", SMOOTH_CASES, ids=[c[0] for c in SMOOTH_CASES])
def test_exact_solvers_agree_with_direct(case, method, kw):
    model, data, sw = fitted(case)
    _, ref = _scores(model, data, sw)
    inf, out = _scores(model, data, sw, method=method, **kw)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    assert inf.solver_info_["method"] == method


@pytest.mark.parametrize("method, kw", EXACT + [("lissa", {
    "tol": 1e-6, "solver_params": {"depth": 3000}})], ids=["cg", "arnoldi", "lissa"])
def test_solvers_on_sparse_text_pipeline(method, kw):
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(300)])
    docs = [" ".join(rng.choice(vocab, rng.integers(5, 30))) for _ in range(400)]
    y = np.array([("w1 " in d) or ("w2 " in d) for d in docs], dtype=int)
    pipe = make_pipeline(HashingVectorizer(n_features=2**9, alternate_sign=False),
                         TfidfTransformer(), LogisticRegression(C=10.0, tol=1e-10))
    pipe.fit(docs[:350], y[:350])
    ref = InfluenceEstimator(pipe, method="direct").fit(docs[:350], y[:350])
    inf = InfluenceEstimator(pipe, method=method, **kw).fit(docs[:350], y[:350])
    assert sp.issparse(inf._Z)  # sparse all the way
    I_ref = ref.score_influence(docs[350:], y[350:])
    rtol = 1e-4 if method == "lissa" else 1e-6
    np.testing.assert_allclose(inf.score_influence(docs[350:], y[350:]), I_ref,
                               rtol=rtol, atol=rtol * np.abs(I_ref).max())


def test_lissa_within_tolerance_when_well_conditioned():
    # The error shrinks like (1 - lambda_min / scale) ** depth: on a well
    # conditioned problem 2000 steps leave less than 1e-6.
    case = next(c for c in CASES if c[0] == "Logistic-C0.05-sw")
    model, data, sw = fitted(case)
    _, ref = _scores(model, data, sw)
    inf, out = _scores(model, data, sw, method="lissa",
                       solver_params={"depth": 2000})
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    info = inf.solver_info_
    assert info["depth"] == 2000 and info["scale"] > 0 and info["residual"] < 1e-6


def test_stochastic_lissa_is_seeded_and_close():
    case = next(c for c in CASES if c[0] == "Logistic-C0.05-sw")
    model, data, sw = fitted(case)
    _, ref = _scores(model, data, sw)
    params = {"depth": 400, "repeats": 16, "batch_size": 300}
    with pytest.warns(ConvergenceWarning, match="mini-batch noise"):
        _, a = _scores(model, data, sw, method="lissa", solver_params=params,
                       random_state=0)
    with pytest.warns(ConvergenceWarning, match="mini-batch noise"):
        _, b = _scores(model, data, sw, method="lissa", solver_params=params,
                       random_state=0)
    np.testing.assert_array_equal(a, b)
    # Mini-batch noise leaves a few percent (relative residual ~0.04).
    assert np.abs(a - ref).max() < 0.1 * np.abs(ref).max()
    assert np.corrcoef(a.ravel(), ref.ravel())[0, 1] > 0.99


def test_arnoldi_low_rank_drops_low_curvature_directions():
    case = next(c for c in CASES if c[0] == "Logistic")
    model, data, sw = fitted(case)
    _, ref = _scores(model, data, sw)
    errors, captured = [], []
    for rank in (3, 10, 25):
        with pytest.warns(ConvergenceWarning, match=f"kept {rank} of 31"):
            inf, out = _scores(model, data, sw, method="arnoldi",
                               solver_params={"rank": rank}, random_state=0)
        info = inf.solver_info_
        assert info["rank"] == rank and np.all(np.diff(info["eigenvalues"]) <= 0)
        errors.append(np.abs(out - ref).max() / np.abs(ref).max())
        captured.append(info["captured"])
    # More eigenpairs, more of the spectrum, closer to the exact answer.
    assert 0 < captured[0] < captured[1] < captured[2] < 1
    assert errors[0] > errors[1] > errors[2] > 1e-6


def test_cg_warns_with_its_residual_when_it_stops_early():
    case = next(c for c in CASES if c[0] == "Logistic")
    model, (Xtr, ytr, Xte, yte), _ = fitted(case)
    inf = InfluenceEstimator(model, method="cg", solver_params={"max_iter": 2})
    inf.fit(Xtr, ytr)
    with pytest.warns(ConvergenceWarning,
                      match=r"true relative residual .* \(largest [0-9.e+-]+\)"):
        inf.score_influence(Xte, yte)
    assert inf.solver_info_["method"] == "cg"
    assert inf._solver.info_["iterations"] == 2


def test_cg_solver_info_records_iterations_and_residuals():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 30))
    H = A @ A.T + np.eye(30)
    solver = CGSolver(tol=1e-10).fit(HessianOperator.from_dense(H))
    B = rng.standard_normal((30, 4))
    np.testing.assert_allclose(solver.solve(B), np.linalg.solve(H, B), rtol=1e-8)
    assert solver.info_["iterations"] <= 30 * 2
    assert solver.info_["residual"] <= 1e-10


def test_lissa_refuses_a_scale_below_the_spectrum():
    H = np.diag([1.0, 10.0, 100.0])
    solver = LiSSASolver(scale=1.0, depth=200).fit(H)
    with pytest.raises(ValueError, match="Raise scale"):
        solver.solve(np.ones((3, 1)))


def test_unknown_solver_params_are_refused():
    case = next(c for c in CASES if c[0] == "Logistic")
    model, (Xtr, ytr, _, _), _ = fitted(case)
    with pytest.raises(ValueError, match=r"'depth'.*do not apply to method='cg'"):
        InfluenceEstimator(model, method="cg", solver_params={"depth": 3}).fit(
            Xtr, ytr)


def test_cg_compacts_converged_columns_without_changing_them():
    # Block-diagonal H: right-hand sides on the diagonal block converge in one
    # Jacobi-preconditioned step, the others take many; the working set is
    # compacted in between, and every column must still be the exact solve.
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 40))
    H = np.zeros((60, 60))
    H[:20, :20] = np.diag(rng.uniform(1, 5, 20))
    H[20:, 20:] = A @ A.T + 0.1 * np.eye(40)
    B = np.zeros((60, 9))
    B[:20, :6] = rng.standard_normal((20, 6))
    B[20:, 6:] = rng.standard_normal((40, 3))
    B[:, 4] = 0.0  # a zero column solves to zero
    solver = CGSolver(tol=1e-12, block=False).fit(HessianOperator.from_dense(H))
    calls = []
    matmat = solver.op_.matmat
    solver.op_.matmat = lambda V: calls.append(V.shape[1]) or matmat(V)
    np.testing.assert_allclose(solver.solve(B), np.linalg.solve(H, B),
                               rtol=1e-9, atol=1e-12)
    # The easy columns dropped, until the true residuals of all are measured.
    assert calls[0] == 8 and max(calls[2:-1]) <= 3 and calls[-1] == 9
    assert solver.info_["iterations"] > 5 and solver.info_["restarts"] == 0


def test_threaded_sparse_hessian_products_equal_dense_ones():
    X = sp.random(400, 300, density=0.05, format="csr", random_state=1)
    sums = np.asarray(X.sum(axis=1)).ravel()
    y = sums > np.median(sums)
    model = LogisticRegression(C=10.0, tol=1e-10).fit(X, y)
    # The dense Hessian, from the direct solver's Cholesky factor on dense X.
    direct = InfluenceEstimator(model, method="direct").fit(X.toarray(), y)
    R = np.triu(direct._solver.factor_[0])
    plain = InfluenceEstimator(model, method="cg", tol=1e-12).fit(X, y)
    threaded = InfluenceEstimator(model, method="cg", tol=1e-12, n_jobs=2).fit(X, y)
    # 130 columns: several cache blocks of the sparse products.
    V = np.random.default_rng(0).standard_normal((plain.n_params_, 130))
    expected = R.T @ (R @ V)
    for inf in (plain, threaded):
        np.testing.assert_allclose(inf._solver.op_.matmat(V), expected,
                                   rtol=1e-12, atol=1e-12)
    direct = InfluenceEstimator(model).fit(X, y).score_influence(X[:20], y[:20])
    np.testing.assert_allclose(threaded.score_influence(X[:20], y[:20]), direct,
                               rtol=1e-6, atol=1e-8 * np.abs(direct).max())


def test_arnoldi_captured_share_estimated_without_a_diagonal():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((80, 80))
    H = A @ A.T / 80 + np.eye(80)
    exact = ArnoldiSolver(rank=10, random_state=0).fit(HessianOperator.from_dense(H))
    assert exact.info_["trace"] == "exact"
    # The same operator without its diagonal (like a torch model's).
    bare = HessianOperator(80, lambda V: H @ V)
    est = ArnoldiSolver(rank=10, random_state=0).fit(bare)
    assert est.info_["trace"].startswith("hutchinson")
    np.testing.assert_allclose(est.info_["captured"], exact.info_["captured"],
                               rtol=0.1)
    np.testing.assert_allclose(est.eigenvalues_, exact.eigenvalues_, rtol=1e-8)


def test_cg_threaded_vector_updates_equal_serial_ones():
    # Large enough (n * k >= 2**20) for the updates to run on row blocks.
    rng = np.random.default_rng(0)
    n, k = 20000, 64
    d = rng.uniform(1, 10, n)
    U = rng.standard_normal((n, 5)) / np.sqrt(n)
    op = HessianOperator(n, lambda V: d[:, None] * V + U @ (U.T @ V), diagonal=d)
    B = rng.standard_normal((n, k))
    serial = CGSolver(tol=1e-10).fit(op).solve(B)
    threaded_solver = CGSolver(tol=1e-10, n_threads=2).fit(op)
    assert len(threaded_solver._rows(B.shape)) == 2
    threaded = threaded_solver.solve(B)
    np.testing.assert_allclose(threaded, serial, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d[:, None] * serial + U @ (U.T @ serial), B,
                               atol=1e-8 * np.abs(B).max())
