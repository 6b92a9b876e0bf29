"""
Influence through a Pipeline tuned by GridSearchCV
==================================================

:class:`~skinfluence.InfluenceEstimator` is a scikit-learn meta-estimator:
it delegates ``predict``, ``predict_proba`` and ``score`` to the model it
wraps, so it can sit inside :class:`~sklearn.model_selection.GridSearchCV`
and be tuned like the model itself. Here it wraps a Pipeline
(StandardScaler, then LogisticRegression) on the breast cancer data; the
search picks ``C``, and the chosen model's influence is computed on raw,
unscaled rows: the scaler is a fixed feature map and influence is taken with
respect to the logistic regression's parameters.
"""

# %%
# Tuning C with the influence estimator inside the search
# -------------------------------------------------------
# The parameter path goes through the wrapper to the pipeline step:
# ``estimator__logisticregression__C``. Each fold refits a clone, and with
# ``refit=True`` ``best_estimator_`` is an InfluenceEstimator fitted on the
# whole training set, ready to score.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator
from skinfluence.plotting import LOOAgreementDisplay

data = load_breast_cancer()
X_train, X_test, y_train, y_test = train_test_split(
    data.data, data.target, test_size=0.25, stratify=data.target, random_state=0
)
pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=10_000))
search = GridSearchCV(
    InfluenceEstimator(pipeline),
    {"estimator__logisticregression__C": np.logspace(-3, 2, 6)},
    cv=5,
)
search.fit(X_train, y_train)
for C, score in zip(search.cv_results_["param_estimator__logisticregression__C"],
                    search.cv_results_["mean_test_score"]):
    print(f"C = {C:<7g} cross-validated accuracy {score:.3f}")
inf = search.best_estimator_
print(f"chosen: {search.best_params_}; test accuracy {inf.score(X_test, y_test):.3f}")

# %%
# Which training rows drove one wrong prediction?
# -----------------------------------------------
# The test row the chosen model gets most wrong (largest log-loss). Its
# influence row is computed on raw ``X``: the pipeline's scaler is applied
# inside.
proba = inf.predict_proba(X_test)
loss = -np.log(proba[np.arange(len(y_test)), np.searchsorted(inf.classes_, y_test)])
i = int(np.argmax(loss))
x_row, y_row = X_test[[i]], y_test[[i]]
print(f"test row {i}: a {data.target_names[y_row[0]]} tumour, "
      f"P({data.target_names[y_row[0]]}) = {np.exp(-loss[i]):.3f}")

k = 8
influence = inf.score_influence(x_row, y_row)[0]
helpful = np.argsort(-influence)[:k]
harmful = np.argsort(influence)[:k]

# %%
# The most helpful and harmful rows, and a check by retraining
# -------------------------------------------------------------
# Left: the eight training rows that helped this test row most (leaving one
# out would raise its log-loss) and the eight that harmed it most, with
# their labels. The helpful rows are malignant tumours like the test row;
# the harmful ones are mostly benign tumours, which pull the decision
# boundary towards calling this one benign. Right: the estimate checked against actual
# leave-one-out retraining of the pipeline's last step on 40 training rows
# (the 20 most influential and 20 at random).
fig, (ax_bar, ax_loo) = plt.subplots(1, 2, figsize=(12, 5.2), layout="constrained")
rows = np.concatenate([helpful, harmful[::-1]])
names = [f"train #{j} ({data.target_names[y_train[j]]})" for j in rows]
colors = ["tab:green"] * k + ["tab:red"] * k
ax_bar.barh(np.arange(2 * k), influence[rows], color=colors)
ax_bar.set_yticks(np.arange(2 * k), names)
ax_bar.invert_yaxis()
ax_bar.axvline(0, color="k", lw=0.8)
ax_bar.set(xlabel="influence on the test row's log-loss (positive helps)",
           title=f"Most helpful and harmful training rows for test row {i}")

LOOAgreementDisplay.from_estimator(
    inf, X_train, y_train, x_row, y_row, n_rows=40, random_state=0, ax=ax_loo
)
ax_loo.set_title("Checked by leave-one-out retraining")
plt.show()
