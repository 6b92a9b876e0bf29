"""
A line with two corrupted targets
=================================

Thirty-odd points on the line ``y = -5x + 5``, with small noise, except two
whose targets were overwritten with ``y = 100``. A least-squares line is
pulled towards them, and its prediction at a test point ``x = 3.2`` goes
wrong. Influence functions say which training points are to blame, without
refitting: each point is coloured by how much the test point's squared error
would change if that point were left out.
"""

# %%
# Data and model
# --------------
# 25 points on ``x`` in [-6, 6] (a step of 0.5), so that ``x = 1`` and
# ``x = -5`` are sampled; their targets are set to 100 instead of 0 and 30.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression

from skinfluence import InfluenceEstimator
from skinfluence.plotting import InfluenceScatterDisplay
from skinfluence.validation import loo_influence

rng = np.random.default_rng(0)
x = np.linspace(-6, 6, 25)
y = -5 * x + 5 + rng.normal(scale=1.0, size=x.size)
corrupted = np.flatnonzero(np.isclose(x, 1) | np.isclose(x, -5))
y[corrupted] = 100.0
X = x[:, np.newaxis]

x_test, y_test = np.array([[3.2]]), np.array([-5 * 3.2 + 5])
model = LinearRegression().fit(X, y)
print(f"fitted line: y = {model.coef_[0]:.2f} x + {model.intercept_:.2f}")
print(f"prediction at x = 3.2: {model.predict(x_test)[0]:.2f} "
      f"(true value {y_test[0]:.2f})")

# %%
# Influence on the test point
# ---------------------------
# Positive influence helps (leaving the point out would raise the test
# error), negative hurts. For least squares the Newton-step estimate is
# exact leave-one-out, which :func:`~skinfluence.validation.loo_influence`
# confirms by refitting; the first-order influence function is shown too.
first = InfluenceEstimator(model).fit(X, y)
newton = InfluenceEstimator(model, estimate="newton").fit(X, y)
I_first = first.score_influence(x_test, y_test)[0]
I_newton = newton.score_influence(x_test, y_test)[0]
actual = loo_influence(model, X, y, x_test, y_test, corrupted)[0]
for j, a in zip(corrupted, actual):
    print(f"x = {x[j]:+.0f}: first order {I_first[j]:+7.2f}, "
          f"Newton {I_newton[j]:+7.2f}, refitted {a:+7.2f}")
clean = np.setdiff1d(np.arange(x.size), corrupted)
print(f"clean points: between {I_newton[clean].min():+.2f} "
      f"and {I_newton[clean].max():+.2f}")

# %%
# The picture
# -----------
# The point at ``x = 1`` is by far the most harmful: it lifts the whole line
# near the test point, and removing it would cut the test error from about
# 19 to nearly 0. The point at ``x = -5`` is just as corrupted, yet it is the
# most *helpful* point for this test point: it steepens the slope, which
# lowers the prediction at ``x = 3.2`` and partly cancels the lift from
# ``x = 1``. Influence is always influence on a given test point.
fig, ax = plt.subplots(figsize=(7.5, 5))
grid = np.linspace(-6.5, 6.5, 2)
ax.plot(grid, -5 * grid + 5, color="0.6", lw=1, label="true line")
ax.plot(grid, model.predict(grid[:, None]), color="k", lw=1, ls="--",
        label="least-squares fit")
display = InfluenceScatterDisplay.from_predictions(
    I_newton, X, y, x_test[0], y_test[0], ax=ax, target_name="y",
    feature_names=["x"], scatter_kwargs={"s": 50},
)
ax.scatter(x[corrupted], y[corrupted], s=220, facecolors="none",
           edgecolors="k", linewidths=1.5)
rank = {np.argmax(I_newton): "the most helpful",
        np.argmin(I_newton): "the most harmful"}
for j, text_xy in zip(corrupted, ((-3.2, 66), (2.2, 66))):
    ax.annotate(
        f"corrupted (x = {x[j]:.0f})\ninfluence {I_newton[j]:+.1f}\n"
        f"{rank.get(j, '')}",
        (x[j], y[j]), xytext=text_xy, fontsize=10,
        arrowprops={"arrowstyle": "->", "color": "k", "shrinkB": 9},
    )
handles, _ = ax.get_legend_handles_labels()
ax.legend(handles=handles, loc="lower left", fontsize="small")
ax.set_title("Influence of each training point on the loss at x = 3.2")
plt.show()
