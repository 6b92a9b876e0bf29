"""Displays of influence, in scikit-learn's Display pattern.

Each Display stores the arrays it draws (``__init__``), draws them
(``plot(ax=None, ...)``, which sets ``ax_``/``axes_``, ``figure_`` and the
artists, and returns the Display), and is built either from an
:class:`~skinfluence.InfluenceEstimator` (``from_estimator``: computes, then
calls ``from_predictions``) or from influence scores already computed
(``from_predictions``: builds and plots).

matplotlib is an optional dependency (``pip install skinfluence[plot]``):
it is imported inside the methods that draw, so this module imports without
it.
"""

from math import isqrt
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata
from sklearn.utils import check_array, check_random_state

from .validation import loo_influence

__all__ = ["InfluenceScatterDisplay", "LOOAgreementDisplay", "TopInfluenceDisplay"]

_COLORBAR_LABEL = "influence on the test loss (positive helps)"
_ESTIMATE_NAMES = {"influence": "first-order influence", "newton": "Newton step"}
# matplotlib's short names, so that a user's ``lw=2`` replaces a default
# ``linewidth``: keys of one group are one property.
_ALIASES = {
    "c": "color",
    "ls": "linestyle",
    "lw": "linewidth",
    "linewidths": "linewidth",
    "ec": "edgecolor",
    "edgecolors": "edgecolor",
    "fc": "facecolor",
    "facecolors": "facecolor",
}


# ------------------------------------------------------------------ helpers
def _check_matplotlib_support(caller_name):
    """Raise an ImportError naming the caller and the extra if matplotlib is
    missing (scikit-learn's ``check_matplotlib_support``, kept here so that
    no private scikit-learn name is imported outside ``utils/_compat.py``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"{caller_name} requires matplotlib. You can install it with "
            "`pip install matplotlib` or `pip install skinfluence[plot]`."
        ) from e


def _merge_style(defaults, user):
    """User keywords over defaults; a user alias (``lw``) drops its default."""
    user = {} if user is None else dict(user)
    given = {_ALIASES.get(key, key) for key in user}
    merged = {
        key: value
        for key, value in defaults.items()
        if _ALIASES.get(key, key) not in given
    }
    merged.update(user)
    return merged


def _finite_1d(values, name):
    """A finite float vector (a single row of shape (1, n) is accepted)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be one test row's influence, a vector of length "
            f"n_train; got an array of shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity.")
    return arr


def _check_k(k, n_train):
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1; got k={k!r}.")
    if k > n_train:
        raise ValueError(
            f"k={k} exceeds the number of training rows ({n_train}); "
            f"choose k <= {n_train}."
        )
    return int(k)


def _num_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _check_train_rows(influence_estimator, X_train):
    n_train = influence_estimator.n_train_
    if _num_rows(X_train) != n_train:
        raise ValueError(
            f"X_train has {_num_rows(X_train)} rows, but influence_estimator "
            f"was fitted on {n_train}; pass the data it was fitted on."
        )


def _feature_names(X):
    columns = getattr(X, "columns", None)
    return None if columns is None else [str(c) for c in columns]


def _dense_rows(X, indices=None):
    """Rows of X as a 2-D numpy array (sparse densified, pandas converted).

    A 1-D sequence of non-numbers (documents for a text Pipeline) is one
    column.
    """
    if sp.issparse(X):
        X = X.tocsr()
        return (X if indices is None else X[indices]).toarray()
    arr = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    return arr if indices is None else arr[np.asarray(indices, dtype=np.intp)]


def _one_row(X, name):
    """``(X as a 1-row batch for the estimator, the row as a 1-D vector)``."""
    if sp.issparse(X):
        batch, row = X, X.toarray()
    else:
        raw = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
        if raw.ndim == 1 and raw.dtype.kind in "OUS":  # [one document]
            batch, row = X, raw.reshape(-1, 1)
        elif raw.ndim == 1:
            batch, row = raw.reshape(1, -1), raw.reshape(1, -1)
        else:
            batch, row = X, raw
    if row.ndim != 2 or row.shape[0] != 1:
        raise ValueError(
            f"{name} must be a single test row (1-D, or 2-D with one row); "
            f"got an array of shape {np.shape(row)}."
        )
    return batch, row[0]


def _one_label(y, name):
    if y is None:
        return None
    arr = np.asarray(y).ravel()
    if arr.size != 1:
        raise ValueError(f"{name} must hold a single label; got {arr.size}.")
    return arr[0]


def _pearson(a, b):
    da, db = a - a.mean(), b - b.mean()
    saa, sbb = da @ da, db @ db
    return float(da @ db / np.sqrt(saa * sbb)) if saa > 0 and sbb > 0 else np.nan


def _fmt(value):
    return f"{value:+.3g}"


def _label_text(label):
    if label is None:
        return ""
    if isinstance(label, (float, np.floating)):
        return f"{label:.3g}"
    return str(label)


def _feature_text(value, width=10):
    if isinstance(value, (Integral, np.integer)):
        return str(value)
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        text = str(value)
        return text if len(text) <= width else text[: width - 1] + "…"


# ----------------------------------------------------------- LOO agreement
class LOOAgreementDisplay:
    """Estimated versus actual leave-one-out influence.

    Each point is one training row: its estimated change in test loss (x)
    against the change measured by retraining without it (y). Points on the
    dashed line ``y = x`` are estimated exactly; the legend gives Pearson's
    r, Spearman's rho and the least-squares slope of actual on estimated.

    Build it with :meth:`from_estimator` (which retrains) or
    :meth:`from_predictions`. All parameters are stored as attributes.

    Parameters
    ----------
    predicted : array-like
        Estimated changes in test loss, e.g. columns of
        :meth:`InfluenceEstimator.score_influence`. Any shape; flattened.
    actual : array-like
        The actual changes after retraining, the same shape as
        ``predicted``, e.g. from :func:`~skinfluence.validation.loo_influence`.
    estimate_name : str, default=None
        Name of the estimate, shown in the legend.
    train_indices : array-like of int, default=None
        The training rows the points stand for, if known (set by
        :meth:`from_estimator`); not drawn.

    Attributes
    ----------
    pearson_ : float
        Pearson correlation of actual with predicted (NaN if either is
        constant).
    spearman_ : float
        Spearman rank correlation of actual with predicted.
    slope_ : float
        Least-squares slope of actual on predicted (with an intercept); 1
        when the estimate has the right scale.
    scatter_ : matplotlib PathCollection
        The points.
    line_ : matplotlib Line2D
        The diagonal ``y = x``.
    ax_ : matplotlib Axes
        Axes with the plot.
    figure_ : matplotlib Figure
        Figure containing the plot.

    See Also
    --------
    skinfluence.validation.loo_influence : Actual leave-one-out changes.
    InfluenceEstimator.score_influence : Estimated changes.
    TopInfluenceDisplay : The most helpful and harmful training rows.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skinfluence.plotting import LOOAgreementDisplay
    >>> predicted = np.array([0.1, -0.2, 0.05, 0.3])
    >>> actual = np.array([0.11, -0.19, 0.05, 0.33])
    >>> display = LOOAgreementDisplay.from_predictions(predicted, actual)
    >>> round(display.pearson_, 3), round(display.slope_, 3)
    (0.999, 1.038)
    """

    def __init__(self, *, predicted, actual, estimate_name=None, train_indices=None):
        self.predicted = predicted
        self.actual = actual
        self.estimate_name = estimate_name
        self.train_indices = train_indices

    @staticmethod
    def _check(predicted, actual):
        predicted = np.asarray(predicted, dtype=np.float64)
        actual = np.asarray(actual, dtype=np.float64)
        if predicted.shape != actual.shape:
            raise ValueError(
                f"predicted and actual must have the same shape; got "
                f"{predicted.shape} and {actual.shape}."
            )
        predicted, actual = predicted.ravel(), actual.ravel()
        if predicted.size < 2:
            raise ValueError(
                f"LOOAgreementDisplay needs at least 2 points; got "
                f"{predicted.size}."
            )
        for name, arr in (("predicted", predicted), ("actual", actual)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains NaN or infinity.")
        return predicted, actual

    def plot(self, ax=None, *, scatter_kwargs=None, line_kwargs=None):
        """Draw the points, the diagonal and the agreement statistics.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes if None.
        scatter_kwargs : dict, default=None
            Keywords for ``ax.scatter``, over the defaults.
        line_kwargs : dict, default=None
            Keywords for ``ax.plot`` drawing ``y = x``, over the defaults.

        Returns
        -------
        display : LOOAgreementDisplay
            This display, with ``ax_``, ``figure_``, ``scatter_``, ``line_``
            and the statistics set.
        """
        _check_matplotlib_support(f"{type(self).__name__}.plot")
        import matplotlib.pyplot as plt

        predicted, actual = self._check(self.predicted, self.actual)
        self.pearson_ = _pearson(predicted, actual)
        self.spearman_ = _pearson(rankdata(predicted), rankdata(actual))
        dp = predicted - predicted.mean()
        var = dp @ dp
        self.slope_ = float(dp @ (actual - actual.mean()) / var) if var > 0 else np.nan

        name = self.estimate_name or "training rows"
        label = (
            f"{name} (n = {predicted.size})\n"
            f"Pearson r = {self.pearson_:.3f}\n"
            f"Spearman ρ = {self.spearman_:.3f}\n"
            f"slope = {self.slope_:.3f}"
        )
        scatter_kwargs = _merge_style(
            {"color": "tab:blue", "alpha": 0.8, "s": 20, "label": label},
            scatter_kwargs,
        )
        line_kwargs = _merge_style(
            {"color": "black", "alpha": 0.7, "linestyle": "--", "linewidth": 1,
             "label": "y = x"},
            line_kwargs,
        )

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 5.5))
        lo = min(predicted.min(), actual.min())
        hi = max(predicted.max(), actual.max())
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        self.line_ = ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad],
                             **line_kwargs)[0]
        self.scatter_ = ax.scatter(predicted, actual, **scatter_kwargs)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set(
            xlabel="estimated change in test loss",
            ylabel="actual change after retraining",
        )
        ax.legend(loc="best", fontsize="small")

        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_predictions(
        cls,
        predicted,
        actual,
        *,
        estimate_name=None,
        train_indices=None,
        ax=None,
        scatter_kwargs=None,
        line_kwargs=None,
    ):
        """Plot estimated against actual leave-one-out changes.

        Parameters
        ----------
        predicted : array-like
            Estimated changes in test loss; any shape, flattened.
        actual : array-like
            Actual changes after retraining, the same shape.
        estimate_name : str, default=None
            Name of the estimate, shown in the legend.
        train_indices : array-like of int, default=None
            The training rows the points stand for, stored for reference.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes if None.
        scatter_kwargs : dict, default=None
            Keywords for ``ax.scatter``.
        line_kwargs : dict, default=None
            Keywords for ``ax.plot`` drawing ``y = x``.

        Returns
        -------
        display : LOOAgreementDisplay
            The drawn display.
        """
        _check_matplotlib_support(f"{cls.__name__}.from_predictions")
        cls._check(predicted, actual)
        display = cls(
            predicted=predicted,
            actual=actual,
            estimate_name=estimate_name,
            train_indices=train_indices,
        )
        return display.plot(
            ax=ax, scatter_kwargs=scatter_kwargs, line_kwargs=line_kwargs
        )

    @classmethod
    def from_estimator(
        cls,
        influence_estimator,
        X_train,
        y_train,
        X_test,
        y_test,
        *,
        train_indices=None,
        n_rows=40,
        sample_weight=None,
        random_state=0,
        estimate_name=None,
        ax=None,
        scatter_kwargs=None,
        line_kwargs=None,
    ):
        """Estimate, retrain without some rows, and plot the agreement.

        The quantity is the change in the summed test loss over
        ``(X_test, y_test)`` (pass one test row for Koh & Liang's Figure 2).
        Each chosen training row costs one refit.

        Parameters
        ----------
        influence_estimator : InfluenceEstimator
            Fitted on ``(X_train, y_train)``.
        X_train : {array-like, sparse matrix} of shape (n_train, n_features)
            The training data it was fitted on, raw.
        y_train : array-like of shape (n_train,)
            Training targets.
        X_test : {array-like, sparse matrix} of shape (n_test, n_features)
            Test rows, raw.
        y_test : array-like of shape (n_test,)
            Their targets.
        train_indices : array-like of int, default=None
            Training rows to leave out. By default ``n_rows // 2`` rounded up
            with the largest absolute estimated influence, plus random others.
        n_rows : int, default=40
            Number of training rows chosen when ``train_indices`` is None.
        sample_weight : array-like of shape (n_train,), default=None
            Training weights the model was fitted with.
        random_state : int, RandomState instance or None, default=0
            Seed of the random rows.
        estimate_name : str, default=None
            Legend name; by default taken from
            ``influence_estimator.estimate``.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes if None.
        scatter_kwargs : dict, default=None
            Keywords for ``ax.scatter``.
        line_kwargs : dict, default=None
            Keywords for ``ax.plot`` drawing ``y = x``.

        Returns
        -------
        display : LOOAgreementDisplay
            The drawn display; ``train_indices`` holds the rows retrained.
        """
        _check_matplotlib_support(f"{cls.__name__}.from_estimator")
        if train_indices is None and (
            not isinstance(n_rows, Integral) or isinstance(n_rows, bool)
            or n_rows < 2
        ):
            raise ValueError(f"n_rows must be an integer >= 2; got {n_rows!r}.")
        scores = np.asarray(influence_estimator.score_influence(X_test, y_test))
        _check_train_rows(influence_estimator, X_train)
        total = scores.sum(axis=0)
        n_train = total.shape[0]
        if train_indices is None:
            n = min(int(n_rows), n_train)
            n_top = (n + 1) // 2
            top = np.argsort(-np.abs(total), kind="stable")[:n_top]
            rest = np.setdiff1d(np.arange(n_train), top)
            rng = check_random_state(random_state)
            others = rng.choice(rest, n - n_top, replace=False)
            train_indices = np.concatenate([top, np.sort(others)])
        else:
            train_indices = np.asarray(train_indices)
            if train_indices.ndim != 1 or train_indices.dtype.kind not in "iu":
                raise ValueError(
                    "train_indices must be a 1-D array of integer row indices; "
                    f"got dtype {train_indices.dtype} and shape "
                    f"{train_indices.shape}."
                )
            bad = (train_indices < 0) | (train_indices >= n_train)
            if np.any(bad):
                raise ValueError(
                    f"train_indices must lie in [0, {n_train}); got "
                    f"{train_indices[bad][:5].tolist()}."
                )
        predicted = total[train_indices]
        if predicted.size < 2:
            raise ValueError(
                f"LOOAgreementDisplay needs at least 2 points; got "
                f"{predicted.size} training rows."
            )
        actual = loo_influence(
            influence_estimator.estimator_,
            X_train,
            y_train,
            X_test,
            y_test,
            train_indices,
            sample_weight=sample_weight,
            t=influence_estimator.t,
            n_jobs=influence_estimator.n_jobs,
        ).sum(axis=0)
        if estimate_name is None:
            estimate_name = _ESTIMATE_NAMES.get(
                influence_estimator.estimate, str(influence_estimator.estimate)
            )
        return cls.from_predictions(
            predicted,
            actual,
            estimate_name=estimate_name,
            train_indices=train_indices,
            ax=ax,
            scatter_kwargs=scatter_kwargs,
            line_kwargs=line_kwargs,
        )


# ----------------------------------------------------------- top influence
class TopInfluenceDisplay:
    """A test row beside its most helpful and most harmful training rows.

    Drawn as images (a grid: the test row; the k most helpful training rows;
    the k most harmful) when the rows are pictures, else as a table of the
    rows' indices, labels, influence values and first features. Positive
    influence helps: leaving the row out would raise the test loss.

    Build it with :meth:`from_estimator` or :meth:`from_predictions`. All
    parameters are stored as attributes.

    Parameters
    ----------
    test_row : array-like of shape (n_features,)
        The test row's features.
    helpful_indices : array-like of shape (n_helpful,)
        Training indices of the most helpful rows, most helpful first.
    helpful_values : array-like of shape (n_helpful,)
        Their influence on the test loss.
    helpful_rows : array-like of shape (n_helpful, n_features)
        Their features.
    harmful_indices : array-like of shape (n_harmful,)
        Training indices of the most harmful rows, most harmful first.
    harmful_values : array-like of shape (n_harmful,)
        Their influence on the test loss.
    harmful_rows : array-like of shape (n_harmful, n_features)
        Their features.
    test_label : object, default=None
        The test row's label.
    helpful_labels : array-like of shape (n_helpful,), default=None
        Labels of the helpful rows.
    harmful_labels : array-like of shape (n_harmful,), default=None
        Labels of the harmful rows.
    image_shape : tuple of int, default=None
        Shape each row is reshaped to for drawing, e.g. ``(8, 8)``.
    feature_names : list of str, default=None
        Column names for the table; ``"x0", "x1", ...`` if None.

    Attributes
    ----------
    axes_ : ndarray of matplotlib Axes
        Shape ``(3, n_cols)`` for images (row 0: the test row in column 0,
        the rest switched off; row 1: helpful; row 2: harmful), ``(1, 1)``
        for the table.
    images_ : ndarray of matplotlib AxesImage or None
        The images, laid out as ``axes_`` (None where nothing is drawn);
        None for the table.
    table_ : matplotlib Table or None
        The table; None for images.
    figure_ : matplotlib Figure
        Figure containing the plot.

    See Also
    --------
    InfluenceEstimator.score_influence : With ``top_k``, the rows shown here.
    InfluenceScatterDisplay : Influence of every training row, for 1-D or
        2-D data.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinfluence import InfluenceEstimator
    >>> from skinfluence.datasets import load_digits_1v7
    >>> from skinfluence.plotting import TopInfluenceDisplay
    >>> data = load_digits_1v7()
    >>> inf = InfluenceEstimator(LogisticRegression()).fit(
    ...     data.X_train, data.y_train)
    >>> display = TopInfluenceDisplay.from_estimator(
    ...     inf, data.X_test[0], data.y_test[0], data.X_train, data.y_train, k=4)
    >>> display.axes_.shape
    (3, 4)
    """

    def __init__(
        self,
        *,
        test_row,
        helpful_indices,
        helpful_values,
        helpful_rows,
        harmful_indices,
        harmful_values,
        harmful_rows,
        test_label=None,
        helpful_labels=None,
        harmful_labels=None,
        image_shape=None,
        feature_names=None,
    ):
        self.test_row = test_row
        self.helpful_indices = helpful_indices
        self.helpful_values = helpful_values
        self.helpful_rows = helpful_rows
        self.harmful_indices = harmful_indices
        self.harmful_values = harmful_values
        self.harmful_rows = harmful_rows
        self.test_label = test_label
        self.helpful_labels = helpful_labels
        self.harmful_labels = harmful_labels
        self.image_shape = image_shape
        self.feature_names = feature_names

    def _groups(self):
        """Checked ``(test_row, [(kind, indices, values, rows, labels), ...])``."""
        test_row = np.asarray(self.test_row)
        if test_row.ndim == 2 and test_row.shape[0] == 1:
            test_row = test_row[0]
        if test_row.ndim != 1:
            raise ValueError(
                f"test_row must be a single row of features; got shape "
                f"{test_row.shape}."
            )
        n_features = test_row.shape[0]
        groups = []
        for kind in ("helpful", "harmful"):
            indices = np.asarray(getattr(self, f"{kind}_indices")).ravel()
            values = np.asarray(getattr(self, f"{kind}_values"), float).ravel()
            rows = _dense_rows(getattr(self, f"{kind}_rows"))
            labels = getattr(self, f"{kind}_labels")
            labels = [None] * len(indices) if labels is None else list(labels)
            if not (len(values) == len(rows) == len(labels) == len(indices)):
                raise ValueError(
                    f"{kind}_indices, {kind}_values, {kind}_rows and "
                    f"{kind}_labels must have one entry per row; got "
                    f"{len(indices)}, {len(values)}, {len(rows)} and "
                    f"{len(labels)}."
                )
            if rows.shape[1] != n_features:
                raise ValueError(
                    f"{kind}_rows have {rows.shape[1]} features but test_row "
                    f"has {n_features}."
                )
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{kind}_values contains NaN or infinity.")
            groups.append((kind, indices, values, rows, labels))
        if len(groups[0][1]) + len(groups[1][1]) == 0:
            raise ValueError("There are no helpful or harmful rows to show.")
        return test_row, groups

    def _resolve_image_shape(self, n_features, as_images):
        if not (isinstance(as_images, bool) or as_images == "auto"):
            raise ValueError(
                f"as_images must be 'auto', True or False; got {as_images!r}."
            )
        if as_images is False:
            return None
        shape = self.image_shape
        if shape is None:
            side = isqrt(n_features)
            if side * side == n_features and n_features >= 16:
                shape = (side, side)
            elif as_images is True:
                raise ValueError(
                    f"as_images=True needs image_shape for {n_features} "
                    "features (not a perfect square >= 16); pass e.g. "
                    "image_shape=(height, width)."
                )
        else:
            shape = tuple(int(s) for s in np.atleast_1d(shape))
            if int(np.prod(shape)) != n_features:
                raise ValueError(
                    f"image_shape={shape} holds {int(np.prod(shape))} values "
                    f"but the rows have {n_features} features."
                )
        return shape

    def plot(
        self,
        ax=None,
        *,
        as_images="auto",
        imshow_kwargs=None,
        n_features_shown=4,
    ):
        """Draw the rows as images or as a table.

        Parameters
        ----------
        ax : matplotlib Axes or array-like of Axes, default=None
            Where to draw. None: a new figure. For images, one Axes (its
            area is divided into the grid) or ``3 * n_cols`` Axes; for the
            table, one Axes.
        as_images : {"auto", True, False}, default="auto"
            "auto": images when ``image_shape`` is set or the feature count
            is a perfect square of at least 16, else a table.
        imshow_kwargs : dict, default=None
            Keywords for ``ax.imshow``, over the defaults (``cmap="gray_r"``,
            one colour scale shared by all panels).
        n_features_shown : int, default=4
            Number of leading features in the table.

        Returns
        -------
        display : TopInfluenceDisplay
            This display, with ``figure_``, ``axes_`` and the artists set.
        """
        _check_matplotlib_support(f"{type(self).__name__}.plot")
        test_row, groups = self._groups()
        shape = self._resolve_image_shape(test_row.shape[0], as_images)
        if shape is None:
            return self._plot_table(ax, test_row, groups, n_features_shown)
        return self._plot_images(ax, test_row, groups, shape, imshow_kwargs)

    def _plot_images(self, ax, test_row, groups, shape, imshow_kwargs):
        import matplotlib.pyplot as plt
        from matplotlib.axes import Axes

        n_cols = max(1, *(len(g[1]) for g in groups))
        if ax is None:
            fig, axes = plt.subplots(
                3, n_cols, figsize=(1.5 * n_cols + 0.8, 5.6), squeeze=False,
                layout="constrained",
            )
        elif isinstance(ax, Axes):
            fig = ax.figure
            grid = ax.get_subplotspec().subgridspec(3, n_cols)
            ax.set_axis_off()
            axes = np.array(
                [[fig.add_subplot(grid[r, c]) for c in range(n_cols)]
                 for r in range(3)]
            )
        else:
            axes = np.asarray(ax, dtype=object)
            if axes.size != 3 * n_cols:
                raise ValueError(
                    f"ax must be one Axes or {3 * n_cols} Axes (3 rows of "
                    f"{n_cols}); got {axes.size}."
                )
            axes = axes.reshape(3, n_cols)
            fig = axes[0, 0].figure

        all_rows = np.vstack([test_row[None, :]] + [g[3] for g in groups])
        all_rows = all_rows.astype(np.float64)
        defaults = {"cmap": "gray_r", "interpolation": "nearest"}
        if "norm" not in (imshow_kwargs or {}):
            defaults.update(vmin=np.nanmin(all_rows), vmax=np.nanmax(all_rows))
        imshow_kwargs = _merge_style(defaults, imshow_kwargs)
        images = np.full((3, n_cols), None, dtype=object)

        def draw(a, row, title, color):
            image = a.imshow(np.reshape(row, shape), **imshow_kwargs)
            a.set_xticks([])
            a.set_yticks([])
            a.set_title(title, fontsize=9, color=color)
            for spine in a.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(2)
            return image

        label = _label_text(self.test_label)
        images[0, 0] = draw(
            axes[0, 0], test_row.astype(np.float64),
            "test row" + (f"\nlabel {label}" if label else ""), "black",
        )
        for a in axes[0, 1:]:
            a.set_axis_off()
        for r, (kind, indices, values, rows, labels) in enumerate(groups, 1):
            color = "tab:green" if kind == "helpful" else "tab:red"
            for c in range(n_cols):
                a = axes[r, c]
                if c >= len(indices):
                    a.set_axis_off()
                    continue
                label = _label_text(labels[c])
                title = f"#{indices[c]}" + (f"  label {label}" if label else "")
                images[r, c] = draw(
                    a, rows[c].astype(np.float64),
                    f"{title}\n{_fmt(values[c])}", color,
                )
            axes[r, 0].set_ylabel(f"most {kind}", fontsize=10, color=color)
        axes[0, 0].set_ylabel("test", fontsize=10)

        self.axes_ = axes
        self.images_ = images
        self.table_ = None
        self.figure_ = fig
        return self

    def _plot_table(self, ax, test_row, groups, n_features_shown):
        import matplotlib.pyplot as plt

        if (not isinstance(n_features_shown, Integral)
                or isinstance(n_features_shown, bool) or n_features_shown < 0):
            raise ValueError(
                f"n_features_shown must be an integer >= 0; got "
                f"{n_features_shown!r}."
            )
        n_features = test_row.shape[0]
        shown = min(int(n_features_shown), n_features)
        names = self.feature_names
        if names is None or len(names) != n_features:
            names = [f"x{f}" for f in range(n_features)]
        has_labels = self.test_label is not None or any(
            label is not None for g in groups for label in g[4]
        )
        columns = ["row", "train index"] + (["label"] if has_labels else [])
        columns += ["influence"] + [str(n) for n in names[:shown]]
        more = n_features > shown
        if more:
            columns.append(f"+{n_features - shown} more")

        def line(role, index, label, value, row):
            cells = [role, index] + ([_label_text(label)] if has_labels else [])
            cells += [value] + [_feature_text(v) for v in row[:shown]]
            return cells + (["…"] if more else [])

        text = [line("test", "", self.test_label, "", test_row)]
        colours = ["white"]
        for kind, indices, values, rows, labels in groups:
            for rank, (i, v, row, label) in enumerate(
                zip(indices, values, rows, labels), 1
            ):
                text.append(line(f"{kind} {rank}", str(i), label, _fmt(v), row))
                colours.append("#dff0d8" if kind == "helpful" else "#f2dede")

        if ax is None:
            fig, ax = plt.subplots(
                figsize=(max(4.0, 1.05 * len(columns)), 0.3 * len(text) + 0.7)
            )
        fig = ax.figure
        ax.set_axis_off()
        table = ax.table(
            cellText=text,
            colLabels=columns,
            cellColours=[[c] * len(columns) for c in colours],
            cellLoc="center",
            loc="center",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        table.scale(1, 1.3)
        for c in range(len(columns)):
            table[0, c].set_text_props(fontweight="bold")

        self.axes_ = np.array([[ax]], dtype=object)
        self.images_ = None
        self.table_ = table
        self.figure_ = fig
        return self

    @classmethod
    def from_predictions(
        cls,
        influence_row,
        X_train,
        x_test,
        *,
        y_train=None,
        y_test=None,
        k=5,
        image_shape=None,
        as_images="auto",
        ax=None,
        imshow_kwargs=None,
        n_features_shown=4,
    ):
        """Show the k most helpful and k most harmful rows of one test row.

        Parameters
        ----------
        influence_row : array-like of shape (n_train,)
            One test row's influence, a row of
            :meth:`InfluenceEstimator.score_influence`.
        X_train : {array-like, sparse matrix} of shape (n_train, n_features)
            Training rows, raw.
        x_test : array-like of shape (n_features,)
            The test row.
        y_train : array-like of shape (n_train,), default=None
            Training labels, shown if given.
        y_test : object, default=None
            The test row's label, shown if given.
        k : int, default=5
            Number of helpful and of harmful rows.
        image_shape : tuple of int, default=None
            Shape of each row as an image, e.g. ``(8, 8)``.
        as_images : {"auto", True, False}, default="auto"
            See :meth:`plot`.
        ax : matplotlib Axes or array-like of Axes, default=None
            See :meth:`plot`.
        imshow_kwargs : dict, default=None
            Keywords for ``ax.imshow``.
        n_features_shown : int, default=4
            Number of leading features in the table.

        Returns
        -------
        display : TopInfluenceDisplay
            The drawn display.
        """
        _check_matplotlib_support(f"{cls.__name__}.from_predictions")
        influence_row = _finite_1d(influence_row, "influence_row")
        n_train = influence_row.shape[0]
        if _num_rows(X_train) != n_train:
            raise ValueError(
                f"influence_row has {n_train} entries but X_train has "
                f"{_num_rows(X_train)} rows; they must match."
            )
        k = _check_k(k, n_train)
        helpful = np.argsort(-influence_row, kind="stable")[:k]
        harmful = np.argsort(influence_row, kind="stable")[:k]
        return cls._build(
            X_train, y_train, x_test, y_test, helpful, influence_row[helpful],
            harmful, influence_row[harmful], image_shape, as_images, ax,
            imshow_kwargs, n_features_shown,
        )

    @classmethod
    def _build(cls, X_train, y_train, x_test, y_test, helpful, helpful_values,
               harmful, harmful_values, image_shape, as_images, ax,
               imshow_kwargs, n_features_shown):
        _, test_row = _one_row(x_test, "x_test")
        if y_train is not None:
            y_train = np.asarray(y_train).ravel()
            if y_train.shape[0] != _num_rows(X_train):
                raise ValueError(
                    f"y_train has {y_train.shape[0]} entries but X_train has "
                    f"{_num_rows(X_train)} rows."
                )
        display = cls(
            test_row=test_row,
            helpful_indices=helpful,
            helpful_values=helpful_values,
            helpful_rows=_dense_rows(X_train, helpful),
            harmful_indices=harmful,
            harmful_values=harmful_values,
            harmful_rows=_dense_rows(X_train, harmful),
            test_label=_one_label(y_test, "y_test"),
            helpful_labels=None if y_train is None else y_train[helpful],
            harmful_labels=None if y_train is None else y_train[harmful],
            image_shape=image_shape,
            feature_names=_feature_names(X_train),
        )
        return display.plot(
            ax=ax, as_images=as_images, imshow_kwargs=imshow_kwargs,
            n_features_shown=n_features_shown,
        )

    @classmethod
    def from_estimator(
        cls,
        influence_estimator,
        X_test_row,
        y_test_row,
        X_train,
        y_train,
        *,
        k=5,
        image_shape=None,
        as_images="auto",
        ax=None,
        imshow_kwargs=None,
        n_features_shown=4,
    ):
        """Score one test row and show its most helpful and harmful rows.

        Uses ``score_influence(x, y, top_k=k)`` and ``top_k=-k``, so the full
        row of influence is never held.

        Parameters
        ----------
        influence_estimator : InfluenceEstimator
            Fitted on ``(X_train, y_train)``.
        X_test_row : array-like of shape (n_features,) or (1, n_features)
            One test row, raw.
        y_test_row : object
            Its label or target.
        X_train : {array-like, sparse matrix} of shape (n_train, n_features)
            The training data ``influence_estimator`` was fitted on, raw.
        y_train : array-like of shape (n_train,)
            Training labels, shown beside the rows.
        k : int, default=5
            Number of helpful and of harmful rows.
        image_shape : tuple of int, default=None
            Shape of each row as an image, e.g. ``(8, 8)``.
        as_images : {"auto", True, False}, default="auto"
            See :meth:`plot`.
        ax : matplotlib Axes or array-like of Axes, default=None
            See :meth:`plot`.
        imshow_kwargs : dict, default=None
            Keywords for ``ax.imshow``.
        n_features_shown : int, default=4
            Number of leading features in the table.

        Returns
        -------
        display : TopInfluenceDisplay
            The drawn display.
        """
        _check_matplotlib_support(f"{cls.__name__}.from_estimator")
        batch, _ = _one_row(X_test_row, "X_test_row")
        y_batch = np.asarray(y_test_row).reshape(-1)
        _one_label(y_batch, "y_test_row")
        _check_train_rows(influence_estimator, X_train)
        k = _check_k(k, influence_estimator.n_train_)
        helpful, helpful_values = influence_estimator.score_influence(
            batch, y_batch, top_k=k
        )
        harmful, harmful_values = influence_estimator.score_influence(
            batch, y_batch, top_k=-k
        )
        return cls._build(
            X_train, y_train, X_test_row, y_batch, helpful[0], helpful_values[0],
            harmful[0], harmful_values[0], image_shape, as_images, ax,
            imshow_kwargs, n_features_shown,
        )


# --------------------------------------------------------- scatter in 1/2-D
_CLASS_MARKERS = ("o", "s", "^", "D", "v", "P")


def _use_class_markers(y_train, class_markers):
    if not (isinstance(class_markers, bool) or class_markers == "auto"):
        raise ValueError(
            f"class_markers must be 'auto', True or False; got {class_markers!r}."
        )
    if y_train is None or class_markers is False:
        return False
    classes = np.unique(y_train)
    if len(classes) > len(_CLASS_MARKERS):
        if class_markers is True:
            raise ValueError(
                f"class_markers=True draws at most {len(_CLASS_MARKERS)} "
                f"classes; y_train has {len(classes)} distinct values."
            )
        return False
    if class_markers is True:
        return True
    fractional = classes.dtype.kind == "f" and np.any(classes != np.round(classes))
    return not fractional


def _mark_classes(scatter, labels):
    """Give each class its own marker shape within the one PathCollection;
    return legend handles for the classes."""
    from matplotlib.lines import Line2D
    from matplotlib.markers import MarkerStyle

    classes = np.unique(labels)
    paths = {}
    for cls, marker in zip(classes, _CLASS_MARKERS):
        style = MarkerStyle(marker)
        paths[cls] = style.get_path().transformed(style.get_transform())
    scatter.set_paths([paths[label] for label in labels])
    return [
        Line2D([], [], marker=marker, linestyle="", color="0.8",
               markeredgecolor="0.35", label=f"class {_label_text(cls)}")
        for cls, marker in zip(classes, _CLASS_MARKERS)
    ]


class InfluenceScatterDisplay:
    """Training points of 1-D or 2-D data coloured by influence on a test row.

    1-D data: feature against target; 2-D data: the two features. Colour is
    each training row's influence on the test row's loss, on a diverging
    scale centred at 0 (blue helps, red hurts); the test point is a star
    (a vertical line for 1-D data without its target). The strongest points
    are drawn last, on top.

    Build it with :meth:`from_estimator` or :meth:`from_predictions`. All
    parameters are stored as attributes.

    Parameters
    ----------
    influence : array-like of shape (n_train,)
        Influence of each training row on the test row's loss.
    X_train : array-like of shape (n_train, n_features)
        Training features, ``n_features`` 1 or 2.
    x_test : array-like of shape (n_features,)
        The test row.
    y_train : array-like of shape (n_train,), default=None
        Training targets: the vertical axis for 1-D data (required there).
    y_test : object, default=None
        The test row's target or label.
    feature_names : list of str, default=None
        Axis labels of the features.
    target_name : str, default=None
        Vertical axis label for 1-D data; "target" if None.

    Attributes
    ----------
    scatter_ : matplotlib PathCollection
        The training points, ordered by absolute influence.
    test_point_ : matplotlib Artist
        The test point (a star, or a vertical line).
    colorbar_ : matplotlib Colorbar or None
        The colour scale, None if ``colorbar=False``.
    ax_ : matplotlib Axes
        Axes with the plot.
    figure_ : matplotlib Figure
        Figure containing the plot.

    See Also
    --------
    TopInfluenceDisplay : The most helpful and harmful training rows.
    LOOAgreementDisplay : Estimated against actual leave-one-out influence.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from skinfluence import InfluenceEstimator
    >>> from skinfluence.plotting import InfluenceScatterDisplay
    >>> X, y = load_diabetes(return_X_y=True)
    >>> X = X[:, [2]]  # body mass index
    >>> inf = InfluenceEstimator(Ridge(alpha=0.1)).fit(X[:400], y[:400])
    >>> display = InfluenceScatterDisplay.from_estimator(
    ...     inf, X[:400], y[:400], X[400], y[400])
    >>> display.colorbar_.ax.get_ylabel()
    'influence on the test loss (positive helps)'
    """

    def __init__(
        self,
        *,
        influence,
        X_train,
        x_test,
        y_train=None,
        y_test=None,
        feature_names=None,
        target_name=None,
    ):
        self.influence = influence
        self.X_train = X_train
        self.x_test = x_test
        self.y_train = y_train
        self.y_test = y_test
        self.feature_names = feature_names
        self.target_name = target_name

    @staticmethod
    def _check_X(X_train):
        X = check_array(X_train, input_name="X_train")
        if X.shape[1] > 2:
            raise ValueError(
                f"InfluenceScatterDisplay draws 1-D or 2-D data, but X_train "
                f"has {X.shape[1]} features; select one or two columns (or "
                "project the data) first."
            )
        return X

    def _checked(self):
        X = self._check_X(self.X_train)
        influence = _finite_1d(self.influence, "influence")
        if influence.shape[0] != X.shape[0]:
            raise ValueError(
                f"influence has {influence.shape[0]} entries but X_train has "
                f"{X.shape[0]} rows; they must match."
            )
        _, x_test = _one_row(np.asarray(self.x_test, dtype=np.float64), "x_test")
        if x_test.shape[0] != X.shape[1]:
            raise ValueError(
                f"x_test has {x_test.shape[0]} features but X_train has "
                f"{X.shape[1]}."
            )
        y_train = self.y_train
        if y_train is not None:
            y_train = np.asarray(y_train).ravel()
            if y_train.shape[0] != X.shape[0]:
                raise ValueError(
                    f"y_train has {y_train.shape[0]} entries but X_train has "
                    f"{X.shape[0]} rows."
                )
        elif X.shape[1] == 1:
            raise ValueError(
                "For 1-D data y_train is required: it is the vertical axis."
            )
        return influence, X, x_test, y_train, _one_label(self.y_test, "y_test")

    def plot(
        self,
        ax=None,
        *,
        scatter_kwargs=None,
        test_kwargs=None,
        colorbar=True,
        class_markers="auto",
    ):
        """Draw the coloured training points and the test point.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes if None.
        scatter_kwargs : dict, default=None
            Keywords for ``ax.scatter`` of the training points, over the
            defaults (``cmap="coolwarm_r"``, a norm centred at 0 and
            symmetric about it; passing ``norm`` or ``vmin``/``vmax``
            replaces it).
        test_kwargs : dict, default=None
            Keywords for the test point's ``ax.scatter`` (or ``ax.axvline``).
        colorbar : bool, default=True
            Whether to draw a colour bar.
        class_markers : "auto" or bool, default="auto"
            For 2-D data, draw each class of ``y_train`` with its own marker
            shape (listed in the legend). "auto": when ``y_train`` is given
            and has at most 6 distinct values that are not fractional
            numbers.

        Returns
        -------
        display : InfluenceScatterDisplay
            This display, with ``ax_``, ``figure_``, ``scatter_``,
            ``test_point_`` and ``colorbar_`` set.
        """
        _check_matplotlib_support(f"{type(self).__name__}.plot")
        import matplotlib.pyplot as plt
        from matplotlib.colors import CenteredNorm

        influence, X, x_test, y_train, y_test = self._checked()
        order = np.argsort(np.abs(influence), kind="stable")
        halfrange = float(np.abs(influence).max()) or 1.0
        defaults = {"cmap": "coolwarm_r", "s": 24, "edgecolor": "0.35",
                    "linewidth": 0.4}
        user = {} if scatter_kwargs is None else dict(scatter_kwargs)
        if not {"norm", "vmin", "vmax"} & set(user):
            defaults["norm"] = CenteredNorm(vcenter=0.0, halfrange=halfrange)
        scatter_kwargs = _merge_style(defaults, user)

        names = self.feature_names
        if names is None or len(names) != X.shape[1]:
            names = [f"feature {f}" for f in range(X.shape[1])]
        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 4.8))
        if X.shape[1] == 1:
            xs, ys = X[order, 0], y_train[order]
            ax.set(xlabel=names[0], ylabel=self.target_name or "target")
        else:
            xs, ys = X[order, 0], X[order, 1]
            ax.set(xlabel=names[0], ylabel=names[1])
        self.scatter_ = ax.scatter(xs, ys, c=influence[order], **scatter_kwargs)
        handles = []
        if X.shape[1] == 2 and _use_class_markers(y_train, class_markers):
            handles = _mark_classes(self.scatter_, y_train[order])

        label = "test point" + (
            "" if y_test is None else f" (y = {_label_text(y_test)})"
        )
        if X.shape[1] == 1 and y_test is None:
            test_kwargs = _merge_style(
                {"color": "black", "linestyle": ":", "linewidth": 1.5,
                 "label": label},
                test_kwargs,
            )
            self.test_point_ = ax.axvline(x_test[0], **test_kwargs)
        else:
            test_kwargs = _merge_style(
                {"marker": "*", "s": 300, "color": "gold", "edgecolor": "black",
                 "linewidth": 1.0, "zorder": 3, "label": label},
                test_kwargs,
            )
            ty = y_test if X.shape[1] == 1 else x_test[1]
            self.test_point_ = ax.scatter([x_test[0]], [ty], **test_kwargs)
        ax.legend(handles=[self.test_point_, *handles], loc="best", fontsize="small")

        self.colorbar_ = None
        if colorbar:
            self.colorbar_ = ax.figure.colorbar(self.scatter_, ax=ax)
            self.colorbar_.set_label(_COLORBAR_LABEL)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_predictions(
        cls,
        influence,
        X_train,
        y_train,
        x_test,
        y_test=None,
        *,
        feature_names=None,
        target_name=None,
        ax=None,
        scatter_kwargs=None,
        test_kwargs=None,
        colorbar=True,
        class_markers="auto",
    ):
        """Plot training points coloured by their influence on one test row.

        Parameters
        ----------
        influence : array-like of shape (n_train,)
            One test row's influence, a row of
            :meth:`InfluenceEstimator.score_influence`.
        X_train : array-like of shape (n_train, n_features)
            Training features, ``n_features`` 1 or 2.
        y_train : array-like of shape (n_train,) or None
            Training targets (required for 1-D data).
        x_test : array-like of shape (n_features,)
            The test row.
        y_test : object, default=None
            Its target or label.
        feature_names : list of str, default=None
            Axis labels; taken from a DataFrame's columns if None.
        target_name : str, default=None
            Vertical axis label for 1-D data.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes if None.
        scatter_kwargs : dict, default=None
            Keywords for ``ax.scatter`` of the training points.
        test_kwargs : dict, default=None
            Keywords for the test point.
        colorbar : bool, default=True
            Whether to draw a colour bar.
        class_markers : "auto" or bool, default="auto"
            See :meth:`plot`.

        Returns
        -------
        display : InfluenceScatterDisplay
            The drawn display.
        """
        _check_matplotlib_support(f"{cls.__name__}.from_predictions")
        display = cls(
            influence=influence,
            X_train=X_train,
            x_test=x_test,
            y_train=y_train,
            y_test=y_test,
            feature_names=(_feature_names(X_train) if feature_names is None
                           else feature_names),
            target_name=target_name,
        )
        return display.plot(
            ax=ax, scatter_kwargs=scatter_kwargs, test_kwargs=test_kwargs,
            colorbar=colorbar, class_markers=class_markers,
        )

    @classmethod
    def from_estimator(
        cls,
        influence_estimator,
        X_train,
        y_train,
        x_test,
        y_test,
        *,
        feature_names=None,
        target_name=None,
        ax=None,
        scatter_kwargs=None,
        test_kwargs=None,
        colorbar=True,
        class_markers="auto",
    ):
        """Score one test row and plot the training points by influence.

        Parameters
        ----------
        influence_estimator : InfluenceEstimator
            Fitted on ``(X_train, y_train)``.
        X_train : array-like of shape (n_train, n_features)
            The training data it was fitted on, ``n_features`` 1 or 2.
        y_train : array-like of shape (n_train,)
            Training targets.
        x_test : array-like of shape (n_features,) or (1, n_features)
            The test row.
        y_test : object
            Its target or label.
        feature_names : list of str, default=None
            Axis labels; taken from a DataFrame's columns if None.
        target_name : str, default=None
            Vertical axis label for 1-D data.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes if None.
        scatter_kwargs : dict, default=None
            Keywords for ``ax.scatter`` of the training points.
        test_kwargs : dict, default=None
            Keywords for the test point.
        colorbar : bool, default=True
            Whether to draw a colour bar.
        class_markers : "auto" or bool, default="auto"
            See :meth:`plot`.

        Returns
        -------
        display : InfluenceScatterDisplay
            The drawn display.
        """
        _check_matplotlib_support(f"{cls.__name__}.from_estimator")
        cls._check_X(X_train)
        _check_train_rows(influence_estimator, X_train)
        batch, _ = _one_row(x_test, "x_test")
        y_batch = np.asarray(y_test).reshape(-1)
        _one_label(y_batch, "y_test")
        influence = influence_estimator.score_influence(batch, y_batch)[0]
        return cls.from_predictions(
            influence,
            X_train,
            y_train,
            x_test,
            y_batch[0],
            feature_names=feature_names,
            target_name=target_name,
            ax=ax,
            scatter_kwargs=scatter_kwargs,
            test_kwargs=test_kwargs,
            colorbar=colorbar,
            class_markers=class_markers,
        )
