"""``python -m skinfluence``: find flipped labels in a bundled data set.

Fits a model on training labels of which a fraction is flipped, ranks the
training rows three ways (self-influence, training loss, harm to the
held-out rows' total loss) and reports how many flips each ranking finds
among its top rows; then shows one test row's most helpful and harmful
training rows, optionally as a figure (``--plot FILE``). Runs offline, in
seconds, on scikit-learn's bundled data. ``python -m skinfluence --help``
lists the options.
"""

import argparse
import sys

import numpy as np

from .datasets import FLIPPED_DATASETS, load_flipped

#: Shares of the training rows checked, top-ranked first.
FRACTIONS = (0.1, 0.2, 0.3)
#: What benchmarks/bench_mislabel.py measured (user guide, "Finding
#: mislabelled rows"), printed under the table.
RECOMMENDATION = (
    "Measured on five data sets with 10% of labels flipped: for a linear model "
    "the training loss finds as many flips as self-influence, at no cost; for "
    "a neural network self-influence is slightly better; held-out harm is the "
    "weakest of the three.")


def _fraction(text):
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1); got {text}")
    return value


def build_parser():
    """The command line's options."""
    parser = argparse.ArgumentParser(
        prog="python -m skinfluence",
        description=(
            "Find flipped labels with influence functions: fit a model on a "
            "bundled data set with some training labels flipped, and rank the "
            "training rows by self-influence, by training loss and by the harm "
            "each does to the held-out rows' total loss."),
    )
    parser.add_argument("--dataset", choices=FLIPPED_DATASETS, default="digits_1v7",
                        help="bundled data set (default: %(default)s)")
    parser.add_argument("--flip", type=_fraction, default=0.1, metavar="FRACTION",
                        help="fraction of training labels flipped "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the split and the flips (default: %(default)s)")
    parser.add_argument("--model", choices=("logistic", "mlp"), default="logistic",
                        help="logistic regression, or scikit-learn's MLPClassifier "
                             "(needs skinfluence[torch]) (default: %(default)s)")
    parser.add_argument("--test-row", type=int, default=0, metavar="I",
                        help="test row whose top influences are shown "
                             "(default: %(default)s)")
    parser.add_argument("-k", type=int, default=5,
                        help="helpful and harmful rows shown (default: %(default)s)")
    parser.add_argument("--plot", metavar="FILE",
                        help="write the test row's top-influence figure to FILE "
                             "(needs matplotlib)")
    return parser


def _fit(kind, data, seed):
    """The model, fitted, and the InfluenceEstimator on it.

    Measurements (breast cancer, wine) are standardised first; digits'
    pixels are already in [0, 1]. The MLP is taken through its torch
    replica with the Gauss-Newton curvature: a ReLU network that L-BFGS
    stopped on is rarely at a point where the Hessian is positive definite.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from . import InfluenceEstimator

    steps = [] if data.image_shape is not None else [StandardScaler()]
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        model = make_pipeline(*steps, LogisticRegression(max_iter=5000))
        model.fit(data.X_train, data.y_train)
        return model, InfluenceEstimator(model).fit(data.X_train, data.y_train)
    from sklearn.neural_network import MLPClassifier

    from .torch import TorchModel

    model = make_pipeline(*steps, MLPClassifier(
        hidden_layer_sizes=(16,), alpha=1.0, solver="lbfgs", max_iter=2000,
        tol=1e-8, random_state=seed)).fit(data.X_train, data.y_train)
    features = model[:-1].transform(data.X_train) if steps else data.X_train
    replica = TorchModel.from_mlp(model[-1], features, data.y_train,
                                  curvature="ggn")
    head = make_pipeline(*model[:-1], replica) if steps else replica
    inf = InfluenceEstimator(head, damping=1e-3).fit(data.X_train, data.y_train)
    return model, inf


def _found(order, flipped, fraction):
    checked = order[: int(round(fraction * len(order)))]
    return flipped[checked].sum() / max(flipped.sum(), 1)


def rankings(inf, model, data, seed=0):
    """Training rows, most suspect first, by each criterion.

    - training loss: the fitted model's loss on the row;
    - self-influence: how much a row's own loss would rise without it;
    - harm to held-out loss: the change of the held-out rows' total loss if
      the row were left out, most negative (most harmful) first;
    - random: the baseline.
    """
    proba = model.predict_proba(data.X_train)
    codes = np.searchsorted(model.classes_, data.y_train)
    loss = -np.log(np.clip(proba[np.arange(len(codes)), codes], 1e-300, None))
    total = inf.score_influence(data.X_test, data.y_test).sum(axis=0)
    n = len(data.y_train)
    return {
        "training loss": np.argsort(-loss, kind="stable"),
        "self-influence": np.argsort(-inf.self_influence(), kind="stable"),
        "held-out harm": np.argsort(total, kind="stable"),
        "random": np.random.default_rng(seed).permutation(n),
    }


def main(argv=None):
    """Run the demo with the command line ``argv`` (default: sys.argv)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"-k must be at least 1; got {args.k}")
    if args.model == "mlp":
        try:
            import torch  # noqa: F401
        except ImportError:
            parser.error("--model mlp needs torch: pip install skinfluence[torch]")
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            parser.error("--plot needs matplotlib: pip install skinfluence[plot]")
        matplotlib.use("Agg")

    data = load_flipped(args.dataset, flip=args.flip, random_state=args.seed)
    if not 0 <= args.test_row < len(data.y_test):
        parser.error(f"--test-row must be in [0, {len(data.y_test)}); "
                     f"got {args.test_row}")
    model, inf = _fit(args.model, data, args.seed)

    n_train, n_flipped = len(data.y_train), int(data.flipped.sum())
    name = type(model[-1]).__name__
    print(f"{args.dataset}: {name} on {n_train} training rows, {n_flipped} of "
          f"their labels flipped at random (test accuracy "
          f"{model.score(data.X_test, data.y_test):.3f}).")
    if n_flipped:
        ranked = rankings(inf, model, data, args.seed)
        print("\nFraction of flipped labels found after checking the top-ranked "
              "rows:")
        print(f"{'rows checked':>14} " + " ".join(f"{k:>15}" for k in ranked))
        for fraction in FRACTIONS:
            cells = " ".join(f"{_found(order, data.flipped, fraction):>15.2f}"
                             for order in ranked.values())
            print(f"{fraction:>14.0%} {cells}")
        print("(held-out harm: influence on the test rows' total loss, "
              "most harmful first)")
        print(RECOMMENDATION)

    i = args.test_row
    x, y = data.X_test[i: i + 1], data.y_test[i: i + 1]
    helpful_idx, helpful = inf.score_influence(x, y, top_k=args.k)
    harmful_idx, harmful = inf.score_influence(x, y, top_k=-args.k)
    print(f"\nTest row #{i} (label {y[0]}, predicted {model.predict(x)[0]}): "
          "training rows whose removal would change its log-loss the most")
    print(f"{'':>9} {'row':>5} {'label':>6} {'flipped':>8} {'influence':>11}")
    for kind, idx, val in (("helpful", helpful_idx[0], helpful[0]),
                           ("harmful", harmful_idx[0], harmful[0])):
        for j, v in zip(idx, val):
            print(f"{kind:>9} {j:>5} {data.y_train[j]:>6} "
                  f"{'yes' if data.flipped[j] else 'no':>8} {v:>+11.2e}")
            kind = ""
    print("\nInfluence is in log-loss units: positive helps the test row.")

    if args.plot:
        import matplotlib.pyplot as plt

        from .plotting import TopInfluenceDisplay

        display = TopInfluenceDisplay.from_estimator(
            inf, data.X_train, data.y_train, x, y[0], k=args.k,
            image_shape=data.image_shape)
        display.figure_.savefig(args.plot)
        plt.close(display.figure_)
        print(f"Figure written to {args.plot}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
