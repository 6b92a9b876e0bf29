"""``python -m skinfluence``: find flipped labels in handwritten 1s and 7s.

Runs offline in seconds on scikit-learn's bundled digits.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression

from . import InfluenceEstimator
from .datasets import load_digits_1v7


def _found(order, flipped, fraction):
    checked = order[: int(round(fraction * len(order)))]
    return flipped[checked].sum() / flipped.sum()


def main():
    data = load_digits_1v7(flip=0.1, random_state=0)
    model = LogisticRegression(max_iter=1000).fit(data.X_train, data.y_train)
    inf = InfluenceEstimator(model).fit(data.X_train, data.y_train)

    n_train, n_flipped = len(data.y_train), int(data.flipped.sum())
    print(
        f"Digits 1 vs 7: logistic regression on {n_train} training rows, "
        f"{n_flipped} of their labels flipped at random "
        f"(test accuracy {model.score(data.X_test, data.y_test):.3f})."
    )
    raw = model.decision_function(data.X_train)
    sign = np.where(data.y_train == model.classes_[1], 1.0, -1.0)
    loss = np.logaddexp(0.0, -sign * raw)
    rankings = {
        "self-influence": np.argsort(-inf.self_influence(), kind="stable"),
        "training loss": np.argsort(-loss, kind="stable"),
        "random": np.random.default_rng(0).permutation(n_train),
    }
    print("\nFraction of flipped labels found after checking the top-ranked rows:")
    print(f"{'rows checked':>14} " + " ".join(f"{k:>15}" for k in rankings))
    for fraction in (0.1, 0.2, 0.3):
        cells = " ".join(
            f"{_found(order, data.flipped, fraction):>15.2f}"
            for order in rankings.values()
        )
        print(f"{fraction:>14.0%} {cells}")

    i = 0
    x, y = data.X_test[i : i + 1], data.y_test[i : i + 1]
    helpful_idx, helpful = inf.score_influence(x, y, top_k=5)
    harmful_idx, harmful = inf.score_influence(x, y, top_k=-5)
    print(
        f"\nTest digit #{i} (label {y[0]}, predicted {model.predict(x)[0]}): "
        "training rows whose removal would change its log-loss the most"
    )
    print(f"{'':>9} {'row':>5} {'label':>6} {'flipped':>8} {'influence':>11}")
    for name, idx, val in (("helpful", helpful_idx[0], helpful[0]),
                           ("harmful", harmful_idx[0], harmful[0])):
        for j, v in zip(idx, val):
            print(
                f"{name:>9} {j:>5} {data.y_train[j]:>6} "
                f"{'yes' if data.flipped[j] else 'no':>8} {v:>+11.2e}"
            )
            name = ""
    print("\nInfluence is in log-loss units: positive helps the test digit.")


if __name__ == "__main__":
    main()
