import importlib
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from scipy.stats import spearmanr  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402

from skinfluence import InfluenceEstimator  # noqa: E402
from skinfluence.plotting import (  # noqa: E402
    InfluenceScatterDisplay,
    LOOAgreementDisplay,
    TopInfluenceDisplay,
)
from skinfluence.validation import loo_influence  # noqa: E402

COLORBAR_LABEL = "influence on the test loss (positive helps)"


@pytest.fixture
def pyplot():
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


@pytest.fixture(scope="module")
def cancer_newton(cancer):
    Xtr, ytr, Xte, yte = cancer
    model = LogisticRegression(tol=1e-10).fit(Xtr, ytr)
    return InfluenceEstimator(model, estimate="newton").fit(Xtr, ytr), cancer


@pytest.fixture(scope="module")
def digits17_inf(digits17):
    Xtr, ytr, _, _ = digits17
    return InfluenceEstimator(LogisticRegression()).fit(Xtr, ytr)


@pytest.fixture(scope="module")
def bmi(diabetes):
    """Diabetes reduced to one feature (body mass index), with Ridge."""
    Xtr, ytr, Xte, yte = diabetes
    Xtr, Xte = Xtr[:, [2]], Xte[:, [2]]
    inf = InfluenceEstimator(Ridge(alpha=0.1)).fit(Xtr, ytr)
    return inf, (Xtr, ytr, Xte, yte)


@pytest.fixture(scope="module")
def blobs2d():
    X, y = make_classification(
        n_samples=120, n_features=2, n_redundant=0, n_informative=2,
        n_clusters_per_class=1, random_state=0,
    )
    inf = InfluenceEstimator(LogisticRegression()).fit(X[:-1], y[:-1])
    return inf, (X[:-1], y[:-1], X[-1], y[-1])


def _legend_text(ax):
    return "\n".join(t.get_text() for t in ax.get_legend().get_texts())


# ------------------------------------------------------------ optional dep
def test_module_imports_without_matplotlib(monkeypatch):
    import skinfluence

    # Re-importing rebinds the package attribute too: restore both after.
    monkeypatch.setattr(skinfluence, "plotting", sys.modules["skinfluence.plotting"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "skinfluence.plotting")
    module = importlib.import_module("skinfluence.plotting")
    display = module.LOOAgreementDisplay(predicted=[0.0, 1.0], actual=[0.0, 1.0])
    with pytest.raises(ImportError, match="LOOAgreementDisplay.plot requires"):
        display.plot()
    with pytest.raises(ImportError, match="requires matplotlib"):
        module.TopInfluenceDisplay.from_predictions([0.0, 1.0], [[0], [1]], None, [0])


# ------------------------------------------------------------ LOO agreement
def test_loo_agreement_from_predictions(pyplot):
    rng = np.random.default_rng(0)
    predicted = rng.normal(size=30)
    actual = 1.1 * predicted + 0.05 * rng.normal(size=30)
    display = LOOAgreementDisplay.from_predictions(
        predicted, actual, estimate_name="Newton step"
    )
    r = np.corrcoef(predicted, actual)[0, 1]
    slope = np.polyfit(predicted, actual, 1)[0]
    rho = spearmanr(predicted, actual).statistic
    assert display.pearson_ == pytest.approx(r)
    assert display.slope_ == pytest.approx(slope)
    assert display.spearman_ == pytest.approx(rho)

    assert len(display.scatter_.get_offsets()) == 30
    np.testing.assert_allclose(display.scatter_.get_offsets()[:, 0], predicted)
    np.testing.assert_allclose(display.line_.get_xdata(), display.line_.get_ydata())
    lo, hi = display.line_.get_xdata()
    assert lo < min(predicted.min(), actual.min())
    assert hi > max(predicted.max(), actual.max())
    ax = display.ax_
    assert ax.get_xlabel() == "estimated change in test loss"
    assert ax.get_ylabel() == "actual change after retraining"
    legend = _legend_text(ax)
    for text in (f"r = {r:.3f}", f"ρ = {rho:.3f}", f"slope = {slope:.3f}",
                 "Newton step", "n = 30", "y = x"):
        assert text in legend
    assert display.figure_ is ax.figure


def test_loo_agreement_flattens_matrices_and_uses_ax(pyplot):
    fig, ax = pyplot.subplots()
    predicted = np.arange(12.0).reshape(3, 4)
    display = LOOAgreementDisplay.from_predictions(
        predicted, 2 * predicted, ax=ax,
        scatter_kwargs={"c": "red"}, line_kwargs={"lw": 3},
    )
    assert display.ax_ is ax and display.figure_ is fig
    assert len(display.scatter_.get_offsets()) == 12
    assert display.slope_ == pytest.approx(2.0)
    assert display.pearson_ == pytest.approx(1.0)
    np.testing.assert_allclose(
        display.scatter_.get_facecolor()[0], matplotlib.colors.to_rgba("red", 0.8)
    )
    assert display.line_.get_linewidth() == 3


def test_loo_agreement_constant_estimate_is_nan_not_error(pyplot):
    display = LOOAgreementDisplay.from_predictions([1.0, 1.0, 1.0], [0.0, 1.0, 2.0])
    assert np.isnan(display.pearson_) and np.isnan(display.slope_)
    assert "r = nan" in _legend_text(display.ax_)


@pytest.mark.parametrize(
    "predicted, actual, match",
    [
        ([0.0, 1.0, 2.0], [0.0, 1.0], r"same shape; got \(3,\) and \(2,\)"),
        ([0.0, np.nan], [0.0, 1.0], "predicted contains NaN"),
        ([0.0, 1.0], [0.0, np.inf], "actual contains NaN or infinity"),
        ([1.0], [1.0], "at least 2 points; got 1"),
    ],
)
def test_loo_agreement_bad_input(pyplot, predicted, actual, match):
    with pytest.raises(ValueError, match=match):
        LOOAgreementDisplay.from_predictions(predicted, actual)
    with pytest.raises(ValueError, match=match):
        LOOAgreementDisplay(predicted=predicted, actual=actual).plot()


def test_loo_agreement_from_estimator(pyplot, cancer_newton):
    inf, (Xtr, ytr, Xte, yte) = cancer_newton
    fig, ax = pyplot.subplots()
    display = LOOAgreementDisplay.from_estimator(
        inf, Xtr, ytr, Xte[:5], yte[:5], n_rows=10, ax=ax
    )
    assert display.ax_ is ax
    rows = display.train_indices
    assert len(rows) == 10 == len(np.unique(rows))
    total = inf.score_influence(Xte[:5], yte[:5]).sum(axis=0)
    # The first half are the rows of largest estimated |influence|.
    np.testing.assert_array_equal(
        np.sort(rows[:5]), np.sort(np.argsort(-np.abs(total))[:5])
    )
    np.testing.assert_allclose(display.predicted, total[rows])
    assert len(display.scatter_.get_offsets()) == 10
    assert "Newton step" in _legend_text(ax)
    # The statistics are those of the points drawn; the Newton step tracks
    # retraining (its fidelity is test_fidelity.py's business).
    assert display.slope_ == pytest.approx(
        np.polyfit(display.predicted, display.actual, 1)[0]
    )
    assert display.pearson_ > 0.95

    # Explicit rows; the truth is loo_influence's, summed over test rows.
    chosen = rows[:3]
    display = LOOAgreementDisplay.from_estimator(
        inf, Xtr, ytr, Xte[:2], yte[:2], train_indices=chosen
    )
    truth = loo_influence(inf.estimator_, Xtr, ytr, Xte[:2], yte[:2], chosen)
    np.testing.assert_allclose(display.actual, truth.sum(axis=0))


def test_loo_agreement_from_estimator_bad_input(pyplot, cancer_newton):
    inf, (Xtr, ytr, Xte, yte) = cancer_newton
    with pytest.raises(ValueError, match="n_rows must be an integer >= 2"):
        LOOAgreementDisplay.from_estimator(inf, Xtr, ytr, Xte, yte, n_rows=1)
    with pytest.raises(ValueError, match=r"train_indices must lie in \[0, 549\)"):
        LOOAgreementDisplay.from_estimator(
            inf, Xtr, ytr, Xte, yte, train_indices=[0, 549]
        )
    with pytest.raises(ValueError, match="at least 2 points; got 1"):
        LOOAgreementDisplay.from_estimator(inf, Xtr, ytr, Xte, yte, train_indices=[3])
    with pytest.raises(ValueError, match="X_train has 548 rows"):
        LOOAgreementDisplay.from_estimator(inf, Xtr[1:], ytr[1:], Xte, yte)


# ------------------------------------------------------------ top influence
def test_top_influence_images_from_estimator(pyplot, digits17, digits17_inf):
    Xtr, ytr, Xte, yte = digits17
    k = 3
    display = TopInfluenceDisplay.from_estimator(
        digits17_inf, Xtr, ytr, Xte[0], yte[0], k=k
    )
    row = digits17_inf.score_influence(Xte[:1], yte[:1])[0]
    np.testing.assert_array_equal(display.helpful_indices, np.argsort(-row)[:k])
    np.testing.assert_array_equal(display.harmful_indices, np.argsort(row)[:k])
    np.testing.assert_allclose(display.helpful_values, np.sort(row)[::-1][:k])
    np.testing.assert_array_equal(display.helpful_rows, Xtr[display.helpful_indices])
    np.testing.assert_array_equal(display.harmful_labels, ytr[display.harmful_indices])
    assert display.test_label == yte[0]

    assert display.axes_.shape == (3, k)
    drawn = [a for a in display.axes_.ravel() if a.images]
    assert len(drawn) == 2 * k + 1
    for a in drawn:
        assert a.images[0].get_array().shape == (8, 8)
        assert a.get_aspect() == 1.0  # square pixels, not stretched
    assert not any(a.axison for a in display.axes_[0, 1:])
    np.testing.assert_array_equal(
        display.images_[0, 0].get_array(), Xte[0].reshape(8, 8)
    )
    assert f"label {yte[0]}" in display.axes_[0, 0].get_title()
    for c in range(k):
        title = display.axes_[1, c].get_title()
        assert f"#{display.helpful_indices[c]}" in title
        assert f"label {display.helpful_labels[c]}" in title
        assert f"{display.helpful_values[c]:+.3g}" in title
        title = display.axes_[2, c].get_title()
        assert f"{display.harmful_values[c]:+.3g}" in title
    assert display.axes_[1, 0].get_ylabel() == "most helpful"
    assert display.axes_[2, 0].get_ylabel() == "most harmful"
    assert display.table_ is None


def test_top_influence_from_predictions_images_and_ax(pyplot):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(20, 6))
    influence = rng.normal(size=20)
    fig, ax = pyplot.subplots()
    display = TopInfluenceDisplay.from_predictions(
        influence, X, None, X[0], k=2, image_shape=(2, 3), ax=ax
    )
    assert display.figure_ is fig
    assert all(a.figure is fig for a in display.axes_.ravel())
    assert display.axes_.shape == (3, 2)
    assert display.images_[1, 1].get_array().shape == (2, 3)
    np.testing.assert_array_equal(display.helpful_indices, np.argsort(-influence)[:2])
    np.testing.assert_array_equal(display.harmful_indices, np.argsort(influence)[:2])

    # Or exactly 3 * k axes of one's own.
    fig, axes = pyplot.subplots(3, 2)
    display = TopInfluenceDisplay.from_predictions(
        influence, X, None, X[0], k=2, image_shape=(2, 3), ax=axes
    )
    assert display.axes_[2, 1] is axes[2, 1]


def test_top_influence_table(pyplot, cancer):
    Xtr, ytr, Xte, yte = cancer
    inf = InfluenceEstimator(LogisticRegression()).fit(Xtr, ytr)
    k = 2
    display = TopInfluenceDisplay.from_estimator(inf, Xtr, ytr, Xte[[0]], yte[0], k=k)
    assert display.images_ is None and display.axes_.shape == (1, 1)
    cells = display.table_.get_celld()
    columns = ["row", "train index", "label", "influence", "x0", "x1", "x2", "x3",
               "+26 more"]
    assert len(cells) == (1 + 1 + 2 * k) * len(columns)
    assert [cells[0, c].get_text().get_text() for c in range(len(columns))] == columns
    assert cells[1, 0].get_text().get_text() == "test"
    assert cells[2, 0].get_text().get_text() == "helpful 1"
    assert cells[2, 1].get_text().get_text() == str(display.helpful_indices[0])
    assert cells[2, 3].get_text().get_text() == f"{display.helpful_values[0]:+.3g}"
    assert cells[4, 0].get_text().get_text() == "harmful 1"
    assert cells[4, 4].get_text().get_text() == f"{display.harmful_rows[0, 0]:.3g}"

    # Even a square feature count becomes a table when asked.
    X = np.random.default_rng(0).uniform(size=(10, 16))
    display = TopInfluenceDisplay.from_predictions(
        np.arange(10.0), X, None, X[0], k=1, as_images=False, n_features_shown=2
    )
    assert len(display.table_.get_celld()) == 4 * 6  # no label column


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, r"k must be an integer >= 1; got k=0"),
        ({"k": 2.5}, "k must be an integer"),
        ({"k": 11}, r"k=11 exceeds the number of training rows \(10\)"),
        ({"image_shape": (3, 3)}, r"image_shape=\(3, 3\) holds 9 values"),
        ({"as_images": True}, "as_images=True needs image_shape for 6 features"),
        ({"as_images": "yes"}, "as_images must be 'auto', True or False"),
    ],
)
def test_top_influence_bad_options(pyplot, kwargs, match):
    X = np.random.default_rng(0).uniform(size=(10, 6))
    with pytest.raises(ValueError, match=match):
        TopInfluenceDisplay.from_predictions(np.arange(10.0), X, None, X[0], **kwargs)


def test_top_influence_bad_input(pyplot, digits17, digits17_inf):
    Xtr, ytr, Xte, yte = digits17
    n = len(ytr)
    with pytest.raises(ValueError, match="k must be an integer >= 1; got k=0"):
        TopInfluenceDisplay.from_estimator(digits17_inf, Xtr, ytr, Xte[0], yte[0], k=0)
    with pytest.raises(ValueError, match="single test row"):
        TopInfluenceDisplay.from_estimator(digits17_inf, Xtr, ytr, Xte[:2], yte[:2])
    with pytest.raises(ValueError, match="single test row"):
        TopInfluenceDisplay.from_predictions(np.zeros(n), Xtr, None, Xte[:2])
    with pytest.raises(ValueError, match="one test row's influence"):
        TopInfluenceDisplay.from_predictions(np.zeros((2, n)), Xtr, None, Xte[0])
    with pytest.raises(ValueError, match="influence_row contains NaN"):
        TopInfluenceDisplay.from_predictions(np.full(n, np.nan), Xtr, None, Xte[0])
    with pytest.raises(ValueError, match=f"has {n - 1} entries but X_train has {n}"):
        TopInfluenceDisplay.from_predictions(np.zeros(n - 1), Xtr, None, Xte[0])


# ------------------------------------------------------------ scatter
def test_scatter_1d_from_estimator(pyplot, bmi):
    inf, (Xtr, ytr, Xte, yte) = bmi
    display = InfluenceScatterDisplay.from_estimator(
        inf, Xtr, ytr, Xte[0], yte[0], feature_names=["bmi"]
    )
    influence = inf.score_influence(Xte[:1], yte[:1])[0]
    offsets = display.scatter_.get_offsets()
    assert len(offsets) == len(ytr)
    # Points are drawn weakest first; colour, x and y stay together.
    order = np.argsort(np.abs(influence), kind="stable")
    np.testing.assert_allclose(display.scatter_.get_array(), influence[order])
    np.testing.assert_allclose(offsets[:, 0], Xtr[order, 0])
    np.testing.assert_allclose(offsets[:, 1], ytr[order])
    norm = display.scatter_.norm
    assert norm.vmin == pytest.approx(-np.abs(influence).max())
    assert norm.vmax == pytest.approx(np.abs(influence).max())
    assert norm(0.0) == pytest.approx(0.5)  # white/grey centre at 0
    np.testing.assert_allclose(display.test_point_.get_offsets(), [[Xte[0, 0], yte[0]]])
    assert display.colorbar_.ax.get_ylabel() == COLORBAR_LABEL
    assert display.ax_.get_xlabel() == "bmi"
    assert display.ax_.get_ylabel() == "target"
    assert "test point (y = " in _legend_text(display.ax_)


def test_scatter_1d_without_test_target_and_ax(pyplot, bmi):
    inf, (Xtr, ytr, Xte, yte) = bmi
    fig, ax = pyplot.subplots()
    display = InfluenceScatterDisplay.from_predictions(
        np.linspace(-1, 2, len(ytr)), Xtr, ytr, Xte[0], ax=ax, colorbar=False,
        target_name="progression",
    )
    assert display.ax_ is ax and display.figure_ is fig
    assert display.colorbar_ is None
    assert display.test_point_.get_xdata()[0] == Xte[0, 0]  # a vertical line
    assert display.ax_.get_ylabel() == "progression"
    # Symmetric colour range even when the values are not.
    assert display.scatter_.norm.vmin == pytest.approx(-2.0)


def test_scatter_2d_from_estimator(pyplot, blobs2d):
    inf, (X, y, x_test, y_test) = blobs2d
    display = InfluenceScatterDisplay.from_estimator(inf, X, y, x_test, y_test)
    assert len(display.scatter_.get_offsets()) == len(y)
    assert len(display.scatter_.get_paths()) == len(y)  # one marker per point
    np.testing.assert_allclose(display.test_point_.get_offsets(), [x_test])
    assert display.ax_.get_xlabel() == "feature 0"
    assert display.ax_.get_ylabel() == "feature 1"
    assert display.colorbar_.ax.get_ylabel() == COLORBAR_LABEL
    legend = _legend_text(display.ax_)
    assert "class 0" in legend and "class 1" in legend
    assert f"test point (y = {y_test})" in legend

    display = InfluenceScatterDisplay.from_predictions(
        np.zeros(len(y)), X, y, x_test, class_markers=False
    )
    assert "class 0" not in _legend_text(display.ax_)
    assert display.scatter_.norm.vmax == 1.0  # all-zero influence still centred


def test_scatter_bad_input(pyplot, bmi, diabetes):
    inf, (Xtr, ytr, Xte, yte) = bmi
    n = len(ytr)
    X3 = diabetes[0][:, :3]
    with pytest.raises(ValueError, match="X_train has 3 features"):
        InfluenceScatterDisplay.from_predictions(np.zeros(n), X3, ytr, X3[0])
    inf3 = InfluenceEstimator(Ridge()).fit(X3, ytr)
    with pytest.raises(ValueError, match="X_train has 3 features"):
        InfluenceScatterDisplay.from_estimator(inf3, X3, ytr, X3[0], ytr[0])
    with pytest.raises(ValueError, match="influence contains NaN"):
        InfluenceScatterDisplay.from_predictions(np.full(n, np.nan), Xtr, ytr, Xte[0])
    match = f"influence has 3 entries but X_train has {n}"
    with pytest.raises(ValueError, match=match):
        InfluenceScatterDisplay.from_predictions(np.zeros(3), Xtr, ytr, Xte[0])
    with pytest.raises(ValueError, match="y_train is required"):
        InfluenceScatterDisplay.from_predictions(np.zeros(n), Xtr, None, Xte[0])
    with pytest.raises(ValueError, match="single test row"):
        InfluenceScatterDisplay.from_estimator(inf, Xtr, ytr, Xte[:2], yte[:2])
    with pytest.raises(ValueError, match="x_test has 2 features but X_train has 1"):
        InfluenceScatterDisplay.from_predictions(np.zeros(n), Xtr, ytr, [0.0, 1.0])
