"""
Trust but verify: estimated versus actual leave-one-out
=======================================================

Influence functions estimate, without retraining, how each training row's
removal would change a test loss. Here both estimates, first order and one
Newton step, are set beside actual leave-one-out retraining on the breast
cancer data.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence

X, y = load_breast_cancer(return_X_y=True)
X = StandardScaler().fit_transform(X)
rng = np.random.default_rng(0)
test = rng.choice(len(y), 20, replace=False)
train = np.setdiff1d(np.arange(len(y)), test)
model = LogisticRegression(tol=1e-10).fit(X[train], y[train])

first = InfluenceEstimator(model).fit(X[train], y[train])
newton = InfluenceEstimator(model, estimate="newton").fit(X[train], y[train])
I1 = first.score_influence(X[test], y[test])
I2 = newton.score_influence(X[test], y[test])
rows = np.argsort(-np.abs(I1).max(axis=0))[:40]
actual = loo_influence(model, X[train], y[train], X[test], y[test], rows)

fig, ax = plt.subplots(figsize=(5, 5))
for name, I in (("first order", I1), ("Newton step", I2)):
    r = np.corrcoef(I[:, rows].ravel(), actual.ravel())[0, 1]
    ax.scatter(I[:, rows].ravel(), actual.ravel(), s=8, label=f"{name} (r={r:.3f})")
lim = np.abs(actual).max() * 1.1
ax.plot([-lim, lim], [-lim, lim], "k--", lw=1)
ax.set_xlabel("estimated change in test log-loss")
ax.set_ylabel("actual change after retraining")
ax.legend()
plt.show()
