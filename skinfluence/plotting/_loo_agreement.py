"""LOOAgreementDisplay: estimated against actual leave-one-out influence."""

from numbers import Integral

import numpy as np
from scipy.stats import rankdata
from sklearn.utils import check_random_state

from ..validation import loo_influence
from ._base import (
    _ESTIMATE_NAMES,
    _check_matplotlib_support,
    _InfluenceDisplayMixin,
    _merge_style,
    _pearson,
)


class LOOAgreementDisplay(_InfluenceDisplayMixin):
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
        X_test, y_test = cls._validate_from_estimator(
            influence_estimator, X_train, y_train, X_test, y_test)
        if train_indices is None and (
            not isinstance(n_rows, Integral) or isinstance(n_rows, bool)
            or n_rows < 2
        ):
            raise ValueError(f"n_rows must be an integer >= 2; got {n_rows!r}.")
        scores = np.asarray(influence_estimator.score_influence(X_test, y_test))
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
