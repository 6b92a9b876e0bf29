"""
Finding the bad data source
===========================

A digit classifier is trained on scans from five scanners. One of them is
faulty: its images are shifted by a pixel and noisy, and a third of its
labels were keyed in wrong. Which source should be dropped?

``group_influence`` answers for whole sources at once: the change of the
validation loss if every row of a source were left out and the model
refitted. The first-order estimate, the sum of the rows' influences (what
every peer library computes), sees which source is bad but underestimates
what dropping any source does (by a quarter here), since a source also
takes its own curvature with it. The Newton-corrected estimate takes steps
of the model's own objective without the source: two land on the actual
refit, within a few hundredths of a loss unit here.
"""

# %%
# Five scanners, one faulty
# -------------------------
# scikit-learn's 8x8 digits, dealt at random to scanners "A" to "E".
# Scanner "E" shifts its images one pixel to the right, adds noise, and a
# third of its labels are replaced at random.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence

X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.3,
                                                  random_state=0)
rng = np.random.default_rng(0)
source = rng.choice(np.array(list("ABCDE")), size=len(y_train))
bad = source == "E"
images = X_train[bad].reshape(-1, 8, 8)
images = np.roll(images, 1, axis=2) + rng.normal(0, 0.3, images.shape)
X_train[bad] = np.clip(images, 0, 1).reshape(-1, 64)
relabel = bad & (rng.random(len(y_train)) < 1 / 3)
y_train[relabel] = rng.integers(0, 10, relabel.sum())

model = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(X_train, y_train)
print(f"{len(y_train)} training rows, {bad.sum()} from scanner E "
      f"({relabel.sum()} relabelled); validation accuracy "
      f"{model.score(X_val, y_val):.3f}")

# %%
# The effect of dropping each source
# ----------------------------------
# Summed over the validation rows: the change in total validation loss.
# Negative: dropping the source lowers the loss, so the source hurts.
estimates = {}
for name, kw in [("first order", dict(estimate="influence")),
                 ("Newton, 1 step", dict(estimate="newton")),
                 ("Newton, 2 steps", dict(estimate="newton", n_steps=2))]:
    steps = kw.pop("n_steps", 1)
    inf = InfluenceEstimator(model, **kw).fit(X_train, y_train)
    S = inf.group_influence(X_val, y_val, source, n_steps=steps)
    estimates[name] = S.sum(axis=0)
labels = inf.group_labels_
estimates["actual refit"] = loo_influence(
    model, X_train, y_train, X_val, y_val, source).sum(axis=0)

for name, values in estimates.items():
    print(f"{name:>16}: " + "  ".join(
        f"{g} {v:+8.2f}" for g, v in zip(labels, values)))

# %%
# Every estimate points at scanner E, the only source whose removal lowers
# the validation loss; two Newton steps also say by how much, as the refit
# does, where the first-order sum is a quarter short on the good sources.
fig, ax = plt.subplots(figsize=(7, 3.5))
width = 0.2
for k, (name, values) in enumerate(estimates.items()):
    ax.bar(np.arange(len(labels)) + (k - 1.5) * width, values, width, label=name)
ax.axhline(0, color="k", linewidth=0.8)
ax.set_xticks(np.arange(len(labels)), [f"scanner {g}" for g in labels])
ax.set_ylabel("change in validation loss\nif the source is dropped")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
