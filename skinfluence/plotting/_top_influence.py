"""TopInfluenceDisplay: a test row beside its most helpful and harmful rows."""

from math import isqrt
from numbers import Integral

import numpy as np

from ._base import (
    _check_k,
    _check_matplotlib_support,
    _dense_rows,
    _feature_names,
    _feature_text,
    _finite_1d,
    _fmt,
    _InfluenceDisplayMixin,
    _label_text,
    _merge_style,
    _num_rows,
    _one_label,
    _one_row,
)


class TopInfluenceDisplay(_InfluenceDisplayMixin):
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
    ...     inf, data.X_train, data.y_train, data.X_test[0], data.y_test[0], k=4)
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
        y_train,
        X_test,
        y_test=None,
        *,
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
        y_train : array-like of shape (n_train,) or None
            Training labels, shown if given.
        X_test : array-like of shape (n_features,) or (1, n_features)
            The test row.
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
            X_train, y_train, X_test, y_test, helpful, influence_row[helpful],
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
        X_train,
        y_train,
        X_test,
        y_test,
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
        X_train : {array-like, sparse matrix} of shape (n_train, n_features)
            The training data ``influence_estimator`` was fitted on, raw.
        y_train : array-like of shape (n_train,)
            Training labels, shown beside the rows.
        X_test : array-like of shape (n_features,) or (1, n_features)
            One test row, raw.
        y_test : object
            Its label or target.
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
        batch, y_batch = cls._validate_from_estimator(
            influence_estimator, X_train, y_train, X_test, y_test, one_row=True)
        k = _check_k(k, influence_estimator.n_train_)
        helpful, helpful_values = influence_estimator.score_influence(
            batch, y_batch, top_k=k
        )
        harmful, harmful_values = influence_estimator.score_influence(
            batch, y_batch, top_k=-k
        )
        return cls._build(
            X_train, y_train, X_test, y_batch, helpful[0], helpful_values[0],
            harmful[0], harmful_values[0], image_shape, as_images, ax,
            imshow_kwargs, n_features_shown,
        )
