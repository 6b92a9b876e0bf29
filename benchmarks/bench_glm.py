"""Benchmark skinfluence on a binary LogisticRegression against the NumPy floor.

What it measures
----------------
The wall time of ``InfluenceEstimator(model).fit(X_train, y_train)`` followed
by ``.score_influence(X_test, y_test)``, which returns the full
(n_test, n_train) matrix of first-order influence scores, and, in the same
run, the time of the plain NumPy/SciPy computation of the same matrix (the
"floor"): the Hessian ``H = C Z' diag(p(1 - p)) Z + diag([1] * d + [0])`` of
the objective ``C sum_j logloss_j + 1/2 ||w||^2`` with ``Z = [X, 1]``, one
Cholesky factorisation, one triangular solve for the test gradients and one
matrix product against the training gradients. Both matrices are checked to
agree, and the ratio skinfluence / floor is compared with the target of
1.3x. The two take turns for ``--repeats`` rounds (``time.perf_counter``);
the ratio is of the best times, and medians are printed too. The model is
fitted once, outside the timings.

The data are synthetic (nothing is downloaded) and shaped like MNIST 1-vs-7:
13000 training rows, 1000 test rows and 784 "pixels" in [0, 1], most of them
zero, built from a random non-negative low-rank mixture plus noise; labels
come from a noisy linear rule, so the classes are not separable.

How to run
----------
From the repository root::

    python benchmarks/bench_glm.py                    # full size, 1-2 minutes
    python benchmarks/bench_glm.py --n-train 2000 --d 100 --n-test 100
    python benchmarks/bench_glm.py --newton           # also time estimate="newton"
    python benchmarks/bench_glm.py --threads 1        # single-threaded BLAS

The BLAS libraries and their thread counts are printed when threadpoolctl is
installed; ``--threads`` limits them all through it. Run it on an idle
machine: multi-threaded OpenBLAS stalls badly when other processes hold the
cores (a 785 x 785 Cholesky then takes a second instead of 15 ms), so the
1-minute load average is printed and a busy machine is flagged.
"""

import argparse
import os
import time

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceEstimator

TARGET_RATIO = 1.3


# ---------------------------------------------------------------------- data
def make_data(n_train, n_test, d, seed=0, rank=20):
    """MNIST-like dense binary problem: X in [0, 1] with many zeros, noisy y."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    # Pixels on a square grid; only those in a central disc carry strokes,
    # so the border is blank as in MNIST.
    side = int(np.ceil(np.sqrt(d)))
    row, col = np.divmod(np.arange(d), side)
    centre = (side - 1) / 2
    radius = np.hypot(row - centre, col - centre) / max(centre, 1.0)
    # Sparse non-negative "stroke" prototypes, mixed by sparse loadings; every
    # image uses at least one prototype.
    prototypes = rng.random((rank, d)) * (rng.random((rank, d)) < 0.2)
    prototypes *= radius < 0.8
    active = rng.random((n, rank)) < 0.3
    active[np.arange(n), rng.integers(rank, size=n)] = True
    loadings = rng.gamma(1.0, 1.0, size=(n, rank)) * active
    X = 1.2 * loadings @ prototypes - 0.3 + 0.1 * rng.standard_normal((n, d))
    np.clip(X, 0.0, 1.0, out=X)

    # Labels: a random linear rule plus logistic noise (a few percent of labels flip).
    w = rng.standard_normal(d)
    score = X @ w
    score = (score - np.median(score)) / score.std()
    y = (25.0 * score + rng.logistic(size=n) > 0).astype(np.int64)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


# --------------------------------------------------------------- the floor
def floor_influence(model, X_train, y_train, X_test, y_test):
    """The (n_test, n_train) influence matrix in plain NumPy/SciPy."""
    C = model.C
    theta = np.append(model.coef_.ravel(), model.intercept_)
    d = X_train.shape[1]

    Z_train = np.hstack([X_train, np.ones((X_train.shape[0], 1))])
    Z_test = np.hstack([X_test, np.ones((X_test.shape[0], 1))])
    p_train = expit(Z_train @ theta)
    p_test = expit(Z_test @ theta)

    H = Z_train.T @ (Z_train * (C * p_train * (1.0 - p_train))[:, None])
    H[np.arange(d), np.arange(d)] += 1.0  # the intercept is not penalised
    factor = cho_factor(H)

    g_test = p_test - y_test
    g_train = p_train - y_train
    F = cho_solve(factor, (g_test[:, None] * Z_test).T).T
    return (F @ Z_train.T) * (C * g_train)[None, :]


def skinfluence_influence(
    model, X_train, y_train, X_test, y_test, estimate="influence"
):
    """The same matrix through skinfluence's public API."""
    inf = InfluenceEstimator(model, estimate=estimate).fit(X_train, y_train)
    return inf.score_influence(X_test, y_test)


# ---------------------------------------------------------------- helpers
def time_interleaved(fns, repeats):
    """Wall times of ``repeats`` calls of each function, and their results.

    The functions take turns within each round, so a change of machine load
    during the run affects them alike.
    """
    times = {name: [] for name in fns}
    results = dict.fromkeys(fns)
    for _ in range(repeats):
        for name, fn in fns.items():
            results[name] = None  # free the previous matrix before timing
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return times, results


def print_machine_info():
    """BLAS libraries and their threads, and the load the timings run under."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        print("BLAS: unknown (threadpoolctl is not installed)")
    else:
        for pool in threadpool_info():
            print(
                f"{pool['user_api']}: {pool['internal_api']} "
                f"{pool.get('version')}, {pool['num_threads']} threads "
                f"({os.path.basename(pool['filepath'])})"
            )
    cpus = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None:
        print(f"CPUs: {cpus}, load average (1 min) before timing: {load:.2f}")
        if cpus and load > 0.5 * cpus:
            print(
                "WARNING: other processes have been using the CPUs; "
                "timings may be noisy."
            )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n-train", type=int, default=13000, help="training rows")
    parser.add_argument("--d", type=int, default=784, help="number of features")
    parser.add_argument("--n-test", type=int, default=1000, help="test rows")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed rounds; the ratio uses the best time of each",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="limit every BLAS/OpenMP pool to this many threads (threadpoolctl)",
    )
    parser.add_argument(
        "--newton", action="store_true", help='also time estimate="newton"'
    )
    return parser.parse_args(argv)


def run(args):
    X_train, y_train, X_test, y_test = make_data(
        args.n_train, args.n_test, args.d, seed=args.seed
    )
    print(
        f"data: n_train={args.n_train}, d={args.d}, n_test={args.n_test}; "
        f"{np.mean(X_train == 0):.0%} zero pixels, "
        f"{np.mean(y_train):.0%} positive"
    )

    start = time.perf_counter()
    # Fitted tightly: influence is defined at the minimiser (stationarity_ ~0).
    model = LogisticRegression(tol=1e-8, max_iter=5000).fit(X_train, y_train)
    print(
        f"LogisticRegression fit (not timed below): "
        f"{time.perf_counter() - start:.2f} s, n_iter_={model.n_iter_[0]}, "
        f"train accuracy {model.score(X_train, y_train):.3f}, "
        f"test accuracy {model.score(X_test, y_test):.3f}"
    )
    print_machine_info()

    data = (model, X_train, y_train, X_test, y_test)
    fns = {
        "skinfluence": lambda: skinfluence_influence(*data),
        "floor": lambda: floor_influence(*data),
    }
    if args.newton:
        fns["newton"] = lambda: skinfluence_influence(*data, estimate="newton")
    times, results = time_interleaved(fns, args.repeats)
    best = {name: min(t) for name, t in times.items()}

    I_sk, I_floor = results["skinfluence"], results["floor"]
    scale = np.max(np.abs(I_floor))
    err = np.max(np.abs(I_sk - I_floor)) / scale
    np.testing.assert_allclose(I_sk, I_floor, rtol=0, atol=1e-6 * scale)
    print(
        f"matrices agree: shape {I_sk.shape}, max |difference| / max |floor| "
        f"= {err:.1e} (tolerance 1e-6)"
    )

    labels = {
        "skinfluence": "skinfluence",
        "floor": "numpy floor",
        "newton": 'estimate="newton"',
    }
    print()
    print(f"{args.repeats} runs each        best (s)   median (s)")
    for name, t in times.items():
        print(f"  {labels[name]:<19}{best[name]:8.3f}   {np.median(t):8.3f}")
    ratio = best["skinfluence"] / best["floor"]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"  ratio skinfluence / floor (best): {ratio:.2f}x  "
        f"(target: within {TARGET_RATIO}x of the floor: {verdict})"
    )


def main(argv=None):
    args = parse_args(argv)
    if args.threads is None:
        run(args)
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads):
        run(args)


if __name__ == "__main__":
    main()
