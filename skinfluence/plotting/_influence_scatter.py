"""InfluenceScatterDisplay: training points of 1-D or 2-D data by influence."""

import numpy as np
from sklearn.utils import check_array

from ._base import (
    _COLORBAR_LABEL,
    _check_matplotlib_support,
    _feature_names,
    _finite_1d,
    _InfluenceDisplayMixin,
    _label_text,
    _merge_style,
    _one_label,
    _one_row,
)

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



class InfluenceScatterDisplay(_InfluenceDisplayMixin):
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
        X_test,
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
        X_test : array-like of shape (n_features,) or (1, n_features)
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
        cls._check_X(X_train)
        batch, y_batch = cls._validate_from_estimator(
            influence_estimator, X_train, y_train, X_test, y_test, one_row=True)
        influence = influence_estimator.score_influence(batch, y_batch)[0]
        return cls.from_predictions(
            influence,
            X_train,
            y_train,
            X_test,
            y_batch[0],
            feature_names=feature_names,
            target_name=target_name,
            ax=ax,
            scatter_kwargs=scatter_kwargs,
            test_kwargs=test_kwargs,
            colorbar=colorbar,
            class_markers=class_markers,
        )
