"""
Debugging a domain mismatch: who taught the model about children?
=================================================================

Koh & Liang (2017, sec. 5.3) train a model to predict whether a diabetic
patient will be readmitted to hospital, on a training set in which children
are nearly absent and the few who are there were mostly readmitted. At test
time, where children are common and rarely readmitted, the model gets them
wrong. Influence functions trace the test errors back to the handful of
training rows responsible, and to the feature through which they act.

The same experiment on a synthetic but realistic readmission data set: the
records and their labels are simulated, the mismatch is the paper's.
"""

# %%
# Patients and readmissions
# -------------------------
# Each patient has an age group (one-hot, as in the paper's data), the
# length of stay, counts of lab procedures, medications, diagnoses and
# earlier visits, an HbA1c flag and an insulin flag. Readmission is drawn
# from a logistic model: earlier inpatient stays and more diagnoses raise
# the risk, and children are readmitted far less often than adults.
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence

rng = np.random.default_rng(0)
feature_names = [
    "age 0-10", "age 10-30", "age 30-50", "age 50-70", "age 70+",
    "days in hospital", "lab procedures", "medications", "outpatient visits",
    "emergency visits", "inpatient visits", "diagnoses", "HbA1c > 8",
    "insulin", "female",
]


def patients(n):
    """n simulated patients: features X (n, 15) and readmitted y (n,)."""
    age = rng.choice(5, n, p=[0.08, 0.12, 0.2, 0.3, 0.3])
    child = age == 0
    days = 1 + rng.poisson(np.where(child, 2.5, 3.5))
    labs = np.clip(rng.normal(43, 18, n), 1, None).round()
    medications = np.clip(rng.normal(np.where(child, 9, 16), 6), 1, None).round()
    outpatient, emergency = rng.poisson(0.4, n), rng.poisson(0.2, n)
    inpatient = rng.poisson(np.where(child, 0.5, 0.6))
    diagnoses = np.clip(rng.normal(np.where(child, 5, 7.5), 2), 1, 16).round()
    hba1c = rng.random(n) < 0.2
    insulin = rng.random(n) < np.where(child, 0.9, 0.5)
    female = rng.random(n) < 0.5
    logit = (-1.3 + 0.08 * (days - 4) + 0.03 * (medications - 16)
             + 0.25 * outpatient + 0.5 * emergency + 0.7 * inpatient
             + 0.15 * (diagnoses - 7.5) + 0.3 * hba1c + 0.2 * insulin
             + np.array([-1.5, -0.3, 0.0, 0.2, 0.4])[age])
    X = np.column_stack([np.eye(5)[age], days, labs, medications, outpatient,
                         emergency, inpatient, diagnoses, hba1c, insulin, female])
    return X.astype(float), (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


X_all, y_all = patients(6000)
is_child = X_all[:, 0] == 1
print(f"readmitted: {y_all[~is_child].mean():.0%} of adults, "
      f"{y_all[is_child].mean():.0%} of children")

# %%
# The mismatch
# ------------
# The test set is 2,000 patients of the population, one in twelve a child.
# The training set comes from the other 4,000, but its paediatric records
# are incomplete: of the children, only six who were readmitted and two who
# were not made it into the training data. In the paper, 20 of the 24
# training children, none of them readmitted, were deleted, leaving three
# readmitted children of four.
test = np.arange(4000, 6000)
pool = np.arange(4000)
children = pool[is_child[pool]]
kept_children = np.concatenate([children[y_all[children] == 1][:6],
                                children[y_all[children] == 0][:2]])
missing_children = np.setdiff1d(children, kept_children)
train = np.concatenate([pool[~is_child[pool]], kept_children])

X_train, y_train = X_all[train], y_all[train]
X_test, y_test = X_all[test], y_all[test]
child_train, child_test = is_child[train], is_child[test]
print(f"training: {len(train)} patients, {child_train.sum()} children "
      f"({child_train.mean():.1%}), {y_train[child_train].sum()} of them readmitted")
print(f"test: {len(test)} patients, {child_test.sum()} children "
      f"({child_test.mean():.1%}), {y_test[child_test].sum()} of them readmitted")

# %%
# The model fails on children
# ---------------------------
# A standardised logistic regression. Readmission is hard to predict for
# adults too (the features explain part of the risk), but for children the
# model is wrong most of the time: it has learnt from eight training
# children that children are readmitted.
model = make_pipeline(StandardScaler(),
                      LogisticRegression(tol=1e-10, max_iter=10_000))


def test_errors(X, y):
    """Refit on (X, y); return the test errors among adults and children."""
    wrong = clone(model).fit(X, y).predict(X_test) != y_test
    return wrong[~child_test].sum(), wrong[child_test].sum()


model.fit(X_train, y_train)
wrong = model.predict(X_test) != y_test
errors = {"as trained": (wrong[~child_test].sum(), wrong[child_test].sum())}
print(f"test errors: {wrong[~child_test].sum()} of {(~child_test).sum()} adults "
      f"({wrong[~child_test].mean():.0%}), {wrong[child_test].sum()} of "
      f"{child_test.sum()} children ({wrong[child_test].mean():.0%})")

# %%
# Which training rows caused the test errors?
# -------------------------------------------
# The influence of each training row on the total log-loss of the
# misclassified test patients: the sum of their rows of
# :meth:`~skinfluence.InfluenceEstimator.score_influence`. The most negative
# entries are the rows whose removal would lower that loss most, the rows to
# look at first. The estimator works through the Pipeline on raw features.
inf = InfluenceEstimator(model).fit(X_train, y_train)
harm = -inf.score_influence(X_test[wrong], y_test[wrong]).sum(axis=0)
ranking = np.argsort(-harm)
for k in (6, 10, 20, 50):
    print(f"children among the {k:>2} most harmful rows: "
          f"{child_train[ranking[:k]].mean():4.0%} (overall {child_train.mean():.1%})")
print("the six most harmful rows: " + ", ".join(
    f"{'child' if child_train[j] else 'adult'} "
    f"({'readmitted' if y_train[j] else 'not readmitted'}), {harm[j]:.1f}"
    for j in ranking[:6]))
print(f"the next most harmful row: {harm[ranking[6]]:.2f}")

p_train = model.predict_proba(X_train)[np.arange(len(y_train)), y_train]
by_loss = np.argsort(p_train)[:10]
print(f"children among the 10 rows of largest training loss: "
      f"{child_train[by_loss].sum()}")

# %%
# The six readmitted training children are the six most harmful rows, with
# 30 to 100 times the harm of any adult, although they are 0.2% of the
# training set. Their labels are not wrong; they are unrepresentative. That
# is why the training loss does not see them: the model fits them well.
#
# Through which coefficient?
# --------------------------
# :meth:`~skinfluence.InfluenceEstimator.influence_on_params` gives the
# estimated change of every coefficient if a row were left out. Summed over
# the six rows, it names the coefficient they hold up: that of the age group
# 0-10, on which they are the model's main evidence. By this first-order
# estimate it would lose half its value without them (the refit below says
# the real effect is larger), while no other coefficient would move by more
# than 0.002.
flagged = ranking[:6]
shift = inf.influence_on_params(X_train[flagged], y_train[flagged]).sum(axis=0)
coefficients = feature_names + ["intercept"]
for f in np.argsort(-np.abs(shift))[:3]:
    print(f"{coefficients[f]:>16}: coefficient {inf.theta_[f]:+.3f}, "
          f"change without the six rows {shift[f]:+.4f}")
print(f"(per standard deviation of the scaled feature; the coefficient of the "
      f"raw 0/1 indicator is {inf.theta_[0] / model[0].scale_[0]:+.1f} log-odds, "
      f"where the simulation has -1.5)")

# %%
# Checking by refitting
# ---------------------
# Three edits of the training set, each refitted and scored on the same test
# set: removing the 10 rows of largest harm (the six children and four
# adults); removing 10 rows at random, as a control; and the proper fix
# that the diagnosis points to, restoring the missing children's records.
errors["10 most harmful rows removed"] = test_errors(
    np.delete(X_train, ranking[:10], axis=0), np.delete(y_train, ranking[:10]))
random_rows = rng.choice(len(y_train), 10, replace=False)
errors["10 random rows removed"] = test_errors(
    np.delete(X_train, random_rows, axis=0), np.delete(y_train, random_rows))
errors["missing children restored"] = test_errors(
    np.vstack([X_train, X_all[missing_children]]),
    np.concatenate([y_train, y_all[missing_children]]))
for name, (adults, kids) in errors.items():
    print(f"{name:>29}: test errors {adults + kids:>4} "
          f"({adults} adults, {kids} children)")

# %%
# Removing the six children lowers the misclassified rows' total log-loss
# by more than the sum of their influences says: the first-order estimate
# is exact only for small changes, and these are six of the eight rows that
# carry the evidence on one coefficient. :func:`~skinfluence.validation.loo_influence`
# measures the actual drop (one refit without the six, the scaler kept
# fixed); :meth:`~skinfluence.InfluenceEstimator.group_influence` with
# ``estimate="newton"`` and two Newton steps predicts it.
six = np.isin(np.arange(len(y_train)), flagged)[np.newaxis, :]
actual = loo_influence(model, X_train, y_train, X_test[wrong], y_test[wrong],
                       six).sum()
newton = InfluenceEstimator(model, estimate="newton").fit(X_train, y_train)
predicted = newton.group_influence(X_test[wrong], y_test[wrong], six,
                                   n_steps=2).sum()
print(f"drop in the test errors' log-loss without the six children: "
      f"first order {harm[flagged].sum():.0f}, two Newton steps "
      f"{-predicted:.0f}, actual refit {-actual:.0f}")

# %%
# The picture
# -----------
# Left: the harm of the 40 most harmful training rows; the six children
# stand far above every adult. Right: the test errors after each refit.
# Removing the ten rows that influence points at cuts the errors on
# children from most of them to a handful, without touching the adults;
# removing ten random rows changes nothing; restoring the missing records
# does as well as removing the harmful ones.
fig, (ax_rank, ax_err) = plt.subplots(1, 2, figsize=(12, 4.6),
                                      layout="constrained")
top = ranking[:40]
colors = np.where(child_train[top], "tab:red", "tab:gray")
ax_rank.bar(np.arange(1, 41), harm[top], color=colors)
ax_rank.set(xlabel="rank", ylabel="harm: drop in the test errors' log-loss\n"
            "if the row were removed", title="The most harmful training rows",
            yscale="log")
ax_rank.legend(handles=[Patch(color="tab:red", label="child"),
                        Patch(color="tab:gray", label="adult")])

names = list(errors)
adults, kids = np.array([errors[n] for n in names]).T
ax_err.barh(names, adults, color="tab:gray", label="adults")
ax_err.barh(names, kids, left=adults, color="tab:red", label="children")
for i, (a, c) in enumerate(zip(adults, kids)):
    ax_err.text(a + c + 5, i, f"{c} children", va="center", fontsize=9)
ax_err.invert_yaxis()
ax_err.set(xlabel=f"test errors (of {len(y_test)})",
           title="Test errors after each refit",
           xlim=(0, 1.6 * (adults + kids).max()))
ax_err.legend(loc="lower right")
plt.show()
