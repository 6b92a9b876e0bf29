"""How skinfluence scales: solver methods, a large sparse problem, n_train growth.

What it measures
----------------
(a) methods: a dense binary problem shaped like MNIST (13000 training rows,
    1000 test rows, 784 "pixels" in [0, 1], most of them zero) with
    LogisticRegression. For each ``method`` in direct, cg, lissa and arnoldi
    (rank 100): the wall time of ``InfluenceEstimator(...).fit`` plus
    ``score_influence`` (the full (n_test, n_train) matrix), the error
    ``max|I - I_direct| / max|I_direct|`` against direct, and what the solver
    reports in ``solver_info_`` (cg iterations, lissa depth and scale,
    arnoldi rank and captured share of trace(H)).
(b) sparse: a text-like problem, 50000 training rows, 2**17 features, about
    100 non-zeros per row (Zipf word frequencies, tf-idf values, rows of unit
    norm; labels from a planted sparse linear rule), 200 test rows,
    LogisticRegression. ``method="cg"``: fit time, ``score_influence(top_k=10)``
    time and peak memory, both as traced by tracemalloc (NumPy and SciPy
    buffers) and as the growth of the process's peak resident set size
    (``ru_maxrss``; zero when the process peaked earlier, e.g. making data).
    Targets: under 60 s and under 2 GiB.
(c) growth: ``method="cg"``, ``top_k=10``, 100 test rows, the dense data of
    (a) with n_train in {2000, 13000, 50000, 200000}: time and time per
    training row, which stays flat when the cost is linear in n_train. CG's
    iteration count is printed beside it, since the time is about
    iterations x n_train.

The models are fitted once per problem, outside the timings. Data are
synthetic and seeded (nothing is downloaded). ``--preconditioner`` sets CG's
preconditioner in every part ("jacobi", "nystrom"; by default the solver's
own choice); each cg line reports the one used, its rank and sketch columns.

How to run
----------
From the repository root::

    python benchmarks/bench_scale.py --quick          # small sizes, ~10-30 s
    python benchmarks/bench_scale.py --part b         # one part at full size
    python benchmarks/bench_scale.py                  # all parts, full size
    python benchmarks/bench_scale.py --threads 1      # single-threaded BLAS
    python benchmarks/bench_scale.py --part a --n-test 100   # fewer test rows
    python benchmarks/bench_scale.py --part b --preconditioner nystrom

Full size is long on a small machine: part (a) is dominated by lissa (1000
steps, each a Hessian product with all 1000 test gradients over all 13000
rows) and cg; part (c) by its 200000-row case (about 1.3 GB per copy of X).
"""

import argparse
import gc
import resource
import time
import tracemalloc
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from skinfluence import InfluenceEstimator

SIZES = {
    # part: full size, --quick size
    "a": ({"n_train": 13000, "n_test": 1000, "d": 784},
          {"n_train": 2000, "n_test": 100, "d": 196}),
    "b": ({"n_train": 50000, "n_test": 200, "d": 2**17, "nnz": 100},
          {"n_train": 5000, "n_test": 50, "d": 2**14, "nnz": 50}),
    "c": ({"n_trains": (2000, 13000, 50000, 200000), "n_test": 100, "d": 784},
          {"n_trains": (500, 2000, 8000), "n_test": 20, "d": 196}),
}
GiB = 2**30


# ---------------------------------------------------------------------- data
def make_dense(n, d, seed=0, rank=20):
    """MNIST-like binary data: X in [0, 1] with many zeros, noisy linear labels."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(d)))
    row, col = np.divmod(np.arange(d), side)
    centre = (side - 1) / 2
    disc = np.hypot(row - centre, col - centre) < 0.8 * max(centre, 1.0)
    # Sparse non-negative stroke prototypes inside a disc (the border stays
    # blank, as in MNIST), mixed by sparse loadings, plus clipped noise.
    prototypes = rng.random((rank, d)) * (rng.random((rank, d)) < 0.2) * disc
    loadings = rng.gamma(1.0, 1.0, (n, rank)) * (rng.random((n, rank)) < 0.3)
    X = loadings @ (1.2 * prototypes)
    X -= 0.3
    X += 0.1 * rng.standard_normal((n, d))
    np.clip(X, 0.0, 1.0, out=X)
    score = X @ rng.standard_normal(d)
    score = (score - np.median(score)) / score.std()
    y = (5.0 * score + rng.logistic(size=n) > 0).astype(np.int64)
    return X, y


def make_sparse(n, d, nnz, seed=0, n_rule=500):
    """Text-like CSR data: Zipf word counts, tf-idf, unit rows, a planted rule."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / (np.arange(d) + 10.0) ** 1.05  # word r is the r-th most common
    words = rng.choice(d, size=n * nnz, p=freq / freq.sum())
    rows = np.repeat(np.arange(n), nnz)
    X = sp.csr_matrix((np.ones(n * nnz), (rows, words)), shape=(n, d))
    X.sum_duplicates()  # term counts
    df = np.bincount(X.indices, minlength=d)
    X.data = (1.0 + np.log(X.data)) * (np.log((1.0 + n) / (1.0 + df)) + 1.0)[
        X.indices]
    X = normalize(X)
    w = np.zeros(d)  # the rule reads n_rule of the 20000 most common words
    w[rng.choice(min(d, 20000), size=n_rule, replace=False)] = rng.standard_normal(
        n_rule)
    score = X @ w
    score = (score - np.median(score)) / score.std()
    y = (4.0 * score + rng.logistic(size=n) > 0).astype(np.int64)
    return X, y


def fit_model(X, y, **params):
    """A LogisticRegression fitted tightly enough for influence to apply."""
    t0 = time.perf_counter()
    model = LogisticRegression(**params).fit(X, y)
    return model, time.perf_counter() - t0


# ---------------------------------------------------------------- helpers
def max_rss():
    """Peak resident set size of this process so far, in bytes (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(fn):
    """``fn()``'s result, seconds, tracemalloc peak and ru_maxrss growth."""
    gc.collect()
    rss0 = max_rss()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn()
        seconds = time.perf_counter() - t0
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for w in caught:
        print(f"    warning: {w.category.__name__}: {str(w.message)[:160]}")
    return out, seconds, traced, max_rss() - rss0


def solver_summary(info):
    """One line of what the solver did, from ``solver_info_``."""
    method = info["method"]
    if method == "cg":
        its = info.get("total_iterations")
        res = info.get("max_residual", float("nan"))
        pre = info.get("preconditioner")
        if "sketch_columns" in info:
            pre = (f"{pre} (rank {info['rank']}, {info['sketch_columns']} "
                   f"sketch columns)")
        return (f"iterations {its if its is not None else 'n/a'}, "
                f"residual {res:.1e}, "
                f"preconditioner {pre}")
    if method == "lissa":
        return (f"depth {info['depth']}, scale {info['scale']:.4g}, "
                f"residual {info.get('max_residual', float('nan')):.2g}")
    if method == "arnoldi":
        return (f"rank {info['rank']}, captured {info['captured']:.3f}, "
                f"residual {info.get('max_residual', float('nan')):.2g}")
    if method == "direct":
        return (f"null space {info.get('null_space_dim')}, "
                f"min pivot {info.get('min_pivot', float('nan')):.3g}")
    return str(info)


def cg_params(preconditioner, params=None):
    """``solver_params`` of a cg run: ``params`` plus the chosen preconditioner."""
    if preconditioner is None:
        return params
    return {**(params or {}), "preconditioner": preconditioner}


def cg_iterations(inf):
    its = inf.solver_info_.get("total_iterations")
    return "n/a" if its is None else its


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


def split(X, y, n_test):
    return X[n_test:], y[n_test:], X[:n_test], y[:n_test]


# ------------------------------------------------------------------- parts
def part_a(size, seed, preconditioner=None):
    n_train, n_test, d = size["n_train"], size["n_test"], size["d"]
    print(f"\n(a) methods: dense {n_train} x {d}, n_test={n_test}, "
          "LogisticRegression(C=1), full matrix")
    X, y = make_dense(n_train + n_test, d, seed=seed)
    Xtr, ytr, Xte, yte = split(X, y, n_test)
    model, t_model = fit_model(Xtr, ytr, tol=1e-8, max_iter=10_000)
    print(f"    model fit {t_model:.1f} s ({model.n_iter_[0]} lbfgs iterations), "
          f"excluded")
    rows, ref = [], None
    for method, params in [("direct", None), ("cg", cg_params(preconditioner)),
                           ("lissa", None),
                           ("arnoldi", {"rank": 100})]:
        print(f"    running {method} ...", flush=True)

        def run(method=method, params=params):
            inf = InfluenceEstimator(model, method=method, solver_params=params,
                                     random_state=seed)
            t0 = time.perf_counter()
            inf.fit(Xtr, ytr)
            t_fit = time.perf_counter() - t0
            return inf, inf.score_influence(Xte, yte), t_fit

        (inf, I, t_fit), seconds, traced, _ = measure(run)
        if ref is None:
            ref = I
        err = np.max(np.abs(I - ref)) / np.max(np.abs(ref))
        rows.append([method, f"{t_fit:.2f}", f"{seconds - t_fit:.2f}",
                     f"{seconds:.2f}", f"{err:.1e}", f"{traced / GiB:.2f}",
                     solver_summary(inf.solver_info_)])
    table(["method", "fit s", "score s", "total s", "max rel err", "peak GiB",
           "solver_info_"], rows)


def part_b(size, seed, tol=1e-8, n_jobs=-1, preconditioner=None):
    n_train, n_test, d, nnz = (size[k] for k in ("n_train", "n_test", "d", "nnz"))
    print(f"\n(b) sparse: {n_train} x {d} CSR, ~{nnz} draws per row, "
          f"n_test={n_test}, method='cg', tol={tol:g}, n_jobs={n_jobs}, top_k=10, "
          f"preconditioner={preconditioner or 'default'}")
    t0 = time.perf_counter()
    X, y = make_sparse(n_train + n_test, d, nnz, seed=seed)
    Xtr, ytr, Xte, yte = split(X, y, n_test)
    print(f"    data {time.perf_counter() - t0:.1f} s: {Xtr.nnz / n_train:.1f} "
          f"non-zeros per row, {np.count_nonzero(Xtr.getnnz(axis=0))} "
          f"features used, {ytr.mean():.2f} positive")
    model, t_model = fit_model(Xtr, ytr, C=10.0, tol=1e-6, max_iter=10_000)
    print(f"    model fit {t_model:.1f} s ({model.n_iter_[0]} lbfgs iterations, "
          f"train accuracy {model.score(Xtr, ytr):.3f}), excluded")
    inf = InfluenceEstimator(model, method="cg", tol=tol, n_jobs=n_jobs,
                             solver_params=cg_params(preconditioner))
    print(f"    peak RSS before: {max_rss() / GiB:.2f} GiB")
    _, t_fit, m_fit, r_fit = measure(lambda: inf.fit(Xtr, ytr))
    _, t_score, m_score, r_score = measure(
        lambda: inf.score_influence(Xte, yte, top_k=10))
    table(["step", "s", "tracemalloc peak GiB", "ru_maxrss growth GiB"],
          [["fit", f"{t_fit:.2f}", f"{m_fit / GiB:.2f}", f"{r_fit / GiB:.2f}"],
           ["score_influence(top_k=10)", f"{t_score:.2f}", f"{m_score / GiB:.2f}",
            f"{r_score / GiB:.2f}"],
           ["total", f"{t_fit + t_score:.2f}", f"{max(m_fit, m_score) / GiB:.2f}",
            f"{(r_fit + r_score) / GiB:.2f}"]])
    print(f"    n_params {inf.n_params_}; {solver_summary(inf.solver_info_)}; "
          f"process peak RSS {max_rss() / GiB:.2f} GiB")
    print(f"    targets: < 60 s ({'met' if t_fit + t_score < 60 else 'MISSED'}), "
          f"< 2 GiB ({'met' if max(m_fit, m_score) < 2 * GiB else 'MISSED'})")


def part_c(size, seed, preconditioner=None):
    n_trains, n_test, d = size["n_trains"], size["n_test"], size["d"]
    print(f"\n(c) growth: dense d={d}, n_test={n_test}, method='cg', top_k=10, "
          f"preconditioner={preconditioner or 'default'}")
    X, y = make_dense(max(n_trains) + n_test, d, seed=seed)
    Xte, yte = X[:n_test], y[:n_test]
    rows, coef = [], None
    for n in n_trains:
        Xtr, ytr = X[n_test:n_test + n], y[n_test:n_test + n]
        model = LogisticRegression(tol=1e-6, max_iter=10_000, warm_start=True)
        if coef is not None:  # start from the smaller problem's solution
            model.coef_, model.intercept_ = coef
        t0 = time.perf_counter()
        model.fit(Xtr, ytr)
        t_model = time.perf_counter() - t0
        coef = model.coef_.copy(), model.intercept_.copy()

        def run(model=model, Xtr=Xtr, ytr=ytr):
            inf = InfluenceEstimator(
                model, method="cg", solver_params=cg_params(preconditioner)
            ).fit(Xtr, ytr)
            return inf, inf.score_influence(Xte, yte, top_k=10)

        (inf, _), seconds, _, _ = measure(run)
        its = cg_iterations(inf)
        print(f"    n_train={n}: fit+score {seconds:.2f} s, {its} cg iterations "
              f"(model fit {t_model:.1f} s, excluded)", flush=True)
        rows.append([n, f"{seconds:.2f}", f"{1e6 * seconds / n:.1f}", its,
                     f"{1e6 * seconds / n / its:.3f}" if its != "n/a" else "n/a"])
    table(["n_train", "fit+score s", "us per row", "cg iterations",
           "us per row per iteration"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, for a smoke run")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS threads (needs threadpoolctl)")
    parser.add_argument("--n-test", type=int, default=None,
                        help="override the number of test rows of every part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-8,
                        help="CG tolerance of part (b); retrieval needs far less "
                             "than the default")
    parser.add_argument("--preconditioner", choices=["jacobi", "nystrom"],
                        default=None,
                        help="CG's preconditioner in every part (default: the "
                             "solver's own choice)")
    parser.add_argument("--n-jobs", type=int, default=-1,
                        help="InfluenceEstimator's n_jobs in part (b): threads "
                             "for the sparse Hessian products")
    args = parser.parse_args()

    limits = None
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(args.threads)
    print(f"bench_scale: part={args.part}, quick={args.quick}, "
          f"threads={args.threads or 'default'}, "
          f"preconditioner={args.preconditioner or 'default'}")
    parts = {"a": part_a, "b": part_b, "c": part_c}
    for name in ["a", "b", "c"] if args.part == "all" else [args.part]:
        size = dict(SIZES[name][1 if args.quick else 0])
        if args.n_test is not None:
            size["n_test"] = args.n_test
        if name == "b":
            part_b(size, args.seed, tol=args.tol, n_jobs=args.n_jobs,
                   preconditioner=args.preconditioner)
        else:
            parts[name](size, args.seed, preconditioner=args.preconditioner)
    if limits is not None:
        limits.unregister()


if __name__ == "__main__":
    main()
