"""InfluenceEstimator: influence functions for a fitted scikit-learn model."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    MetaEstimatorMixin,
    TransformerMixin,
)
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from ._engine import engine_for
from ._scoring import score_train_rows, top_k_columns
from .utils._compat import (
    HasMethods,
    Interval,
    StrOptions,
    _fit_context,
)


def _check_y_given(y, method):
    if y is None:
        raise ValueError(
            f"{method} needs the targets y of the rows in X (losses depend on "
            "them); got y=None. For influence on the model's output without "
            "labels, use transform(X)."
        )


def _estimator_has(attr):
    def check(self):
        est = getattr(self, "estimator_", self.estimator)
        return hasattr(est, attr)

    return check


class InfluenceEstimator(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, MetaEstimatorMixin, BaseEstimator
):
    """Influence of each training row on a fitted model's losses and outputs.

    Wraps a linear, logistic or linear-SVM scikit-learn model, or a Pipeline
    ending in one, and estimates, without retraining, how leaving each
    training row out would change the loss (or the output) on any row.

    Parameters
    ----------
    estimator : estimator object
        A supported model or a Pipeline whose last step is one, fitted or
        not. If not fitted, ``fit`` fits a clone; if fitted, it is used as is
        and must have been trained on the data passed to ``fit``.
    method : {"auto", "direct", "cg", "lissa", "arnoldi", "ekfac"}, default="auto"
        How ``H^-1`` is applied. "direct" is exact: it factorises (Cholesky)
        either the dense Hessian (primal) or, on wide data with fewer rows
        than parameters, the n x n kernel of the weighted features (dual,
        by the Woodbury identity), whichever is cheaper and fits in memory
        (``solver_params={"form": ...}`` fixes it); "cg" runs batched,
        preconditioned conjugate gradients on matrix-free Hessian products
        (no p x p array); "lissa" the stochastic Neumann series of Agarwal
        et al.; "arnoldi" keeps the top ``rank`` eigenpairs (exact at full
        rank, otherwise it drops the low-curvature directions). "auto"
        chooses by cost and memory: a direct form wherever one fits in half
        the available memory and costs less than an estimate of cg's work,
        cg otherwise (the figures and the reason go into
        ``solver_info_["choice"]``; torch models: direct up to 5000
        parameters). "ekfac" is for torch models.
    estimate : {"influence", "newton"}, default="influence"
        "influence" is the classic first-order influence function
        ``grad L_test . H^-1 . grad l_j``. "newton" takes one Newton step of
        the objective without row j through its leverage and evaluates the
        test loss exactly there: exact for least squares, closer to actual
        retraining where rows have high leverage.
    damping : float, default=0.0
        Value λ added to the Hessian (H + λI). The model's own regularisation
        normally makes the Hessian positive definite; set it when the model
        is unregularised and its features collinear.
    t : float, default=0.1
        Temperature of the smooth hinge ``t log(1 + exp((1 - m) / t))`` used
        in place of the hinge loss (LinearSVC(loss="hinge"),
        SGDClassifier(loss="hinge")); ignored for other models.
    n_jobs : int, default=None
        Number of jobs scoring chunks of training rows in parallel, through
        joblib; iterative solvers on sparse data also run their Hessian
        products in that many threads. ``None`` means 1 unless in a
        ``joblib.parallel_config`` context; -1 uses all processors.
    verbose : int, default=0
        Verbosity of the parallel scoring.
    random_state : int, RandomState instance or None, default=None
        Seed of stochastic solvers (LiSSA's mini-batches, Arnoldi's starting
        vector, the Gaussian Nyström sketch of cg on torch models); unused
        by "direct".
    tol : float, default=1e-8
        Largest true relative residual ``||(H + λI) x − b|| / ||b||`` the
        answer of an iterative solver may have: "cg" iterates to it, and
        "cg", "lissa" and "arnoldi" measure it after every solve (one more
        Hessian product) and raise a ConvergenceWarning with the figure, and
        the setting to change, when it is above (Arnoldi below full rank
        nearly always is). Loosen it to accept a cheaper, approximate
        answer.
    solver_params : dict, default=None
        Settings of the chosen solver: for "direct" ``form`` ("primal" or
        "dual"; chosen by cost by default); for "cg" ``max_iter`` (default
        ``min(1000, 10 * n_params)``), ``preconditioner`` ("auto", the
        default: "nystrom" for GLMs of 5000 parameters or more, "jacobi"
        below, none for torch models; "nystrom": the columns of largest
        diagonal eliminated exactly, Jacobi on the rest, 53 to 27
        iterations on 50,000 hashed documents; "jacobi"; or, for torch
        models, "ekfac": EK-FAC's inverse, which helps most on the exact
        Hessian of a weakly regularised network, e.g. 237 to 101 iterations
        on a digits MLP) and its ``rank`` (Nyström columns; by default
        ``nnz(Z) / (4 p)`` within [8, 256]) and ``block`` ("auto": block CG,
        one Krylov space for all right-hand sides, for torch models, one
        recursion per column for GLMs; True or False to choose); for
        "lissa" ``scale`` (above the
        largest Hessian eigenvalue; estimated by default), ``depth`` (1000),
        ``repeats`` (1), ``batch_size`` (None: full Hessian products); for
        "arnoldi" ``rank`` (100). Keys, types and ranges are validated at
        ``fit``, as scikit-learn validates parameters.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted model (the one passed in if it was fitted).
    n_train_ : int
        Number of training rows.
    n_params_ : int
        Number of parameters influence is taken with respect to (the last
        step's coefficients and intercepts; HuberRegressor's scale too).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``, when they are all strings.
    classes_ : ndarray of shape (n_classes,)
        Class labels, for classifiers.
    method_ : str
        The solver ``method`` resolved to.
    solver_info_ : dict
        What the solver did: method and damping; ``"choice"``, why this
        solver (the memory budget, each candidate's flops and bytes, the
        reason); the form and smallest Cholesky pivot (direct, primal), the
        kernel size and the residual of each solve (direct, dual),
        scale and depth (lissa), rank, eigenvalues and captured share of the
        trace (arnoldi); and of the last solve (it is updated by each, and
        stays bounded): ``residual``, its largest true relative residual
        (dual, cg, lissa, arnoldi), ``iterations`` and ``restarts`` (cg),
        ``outside``, the largest share of a right-hand side outside the kept
        eigenvectors (arnoldi); with the running totals ``n_solves`` and
        ``max_residual``.
    stationarity_ : float
        How far θ̂ is from a minimiser of the training objective: the Newton
        step to it, ``sqrt(∇Jᵀ H⁻¹ ∇J)`` (for hinge models the subgradient
        of least norm), over a typical row's ``sqrt(s_j² ∇ℓ_jᵀ H⁻¹ ∇ℓ_j)``.
        Every actual leave-one-out refit includes that step and no estimate
        does; ``fit`` warns above 1 (a model fitted on other rows or with
        other sample weights, SGD, a loose ``tol``). GLMs and scikit-learn
        MLPs (exact Hessian).
    active_set_ : ndarray of int
        l1 models only (Lasso, ElasticNet, l1 LogisticRegression): the
        features, in the order the model sees them, whose coefficients are
        not zero. They (and the intercept) are the parameters; a removal
        that would move a coefficient to or from zero is not followed.
    group_labels_ : ndarray of shape (n_groups,)
        Set by :meth:`group_influence`: the labels of its last result's
        columns (``np.unique(groups)``, or ``arange(n_groups)`` for a
        boolean ``groups``).
    theta_ : ndarray of shape (`n_params_`,)
        Fitted parameters at ``fit`` time, coefficients then intercept for
        each output (then HuberRegressor's scale ``sigma``).

    See Also
    --------
    skinfluence.validation.loo_influence : Actual leave-one-out retraining.

    Notes
    -----
    The training objective is the model's own, in sum form
    ``J(θ) = Σ_j s_j ℓ(y_j, θ) + ½ θᵀΛθ`` (``s_j`` carries ``C``,
    ``sample_weight`` and ``class_weight``). Leaving row j out moves the
    parameters by about ``H⁻¹ s_j ∇ℓ_j``, so the first-order change of a
    test loss is ``∇L_testᵀ H⁻¹ s_j ∇ℓ_j``.

    References
    ----------
    .. [1] P. W. Koh and P. Liang, "Understanding Black-box Predictions via
       Influence Functions", ICML 2017.
    .. [2] D. Pregibon, "Logistic Regression Diagnostics", Annals of
       Statistics 9(4), 1981.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skinfluence import InfluenceEstimator
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), LogisticRegression())
    >>> inf = InfluenceEstimator(model).fit(X[:400], y[:400])
    >>> inf.score_influence(X[400:], y[400:]).shape
    (169, 400)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "method": [StrOptions({"auto", "direct", "cg", "lissa", "arnoldi", "ekfac"})],
        "estimate": [StrOptions({"influence", "newton"})],
        "damping": [Interval(Real, 0, None, closed="left")],
        "t": [Interval(Real, 0, None, closed="neither")],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "solver_params": [dict, None],
    }

    def __init__(
        self,
        estimator,
        *,
        method="auto",
        estimate="influence",
        damping=0.0,
        t=0.1,
        n_jobs=None,
        verbose=0,
        random_state=None,
        tol=1e-8,
        solver_params=None,
    ):
        self.estimator = estimator
        self.method = method
        self.estimate = estimate
        self.damping = damping
        self.t = t
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state
        self.tol = tol
        self.solver_params = solver_params

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Prepare influence computations for the model trained on (X, y).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_train, n_features)
            The training data of the model, raw (before any Pipeline step).
        y : array-like of shape (n_train,)
            Training targets.
        sample_weight : array-like of shape (n_train,), default=None
            The sample weights the model was (or is to be) trained with.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        if y is None:
            raise ValueError(
                "InfluenceEstimator requires y to be passed, but the target y is None."
            )
        given = self.estimator
        if type(given).__name__ == "FrozenEstimator":
            given = given.estimator
        # The model's family does the work; every method below is shared.
        self._engine = engine_for(given)
        self._engine.fit(self, given, X, np.asarray(y), sample_weight)
        if _is_frame(X):
            self.train_index_ = np.asarray(X.index)
        elif hasattr(self, "train_index_"):
            del self.train_index_
        return self

    # --------------------------------------------------------------- inputs
    def _validate_X(self, X, reset):
        """Validate raw X when the model sees it directly (not a Pipeline)."""
        est = getattr(self, "estimator_", self.estimator)
        if type(est).__name__ == "FrozenEstimator":
            est = est.estimator
        if isinstance(est, Pipeline):
            return X
        return validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=("csr", "csc"),
            dtype=(np.float64, np.float32),
        )

    # ------------------------------------------------------------ scoring
    def score_influence(self, X, y, *, top_k=None, kind="loss"):
        """Estimated change of each test loss if each training row were left out.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_test, n_features)
            Test rows, raw.
        y : array-like of shape (n_test,)
            Their targets.
        top_k : int, default=None
            If given, return only the ``top_k`` most helpful training rows of
            each test row (``-top_k``: the most harmful), without holding the
            full matrix.
        kind : {"loss", "perturbation"}, default="loss"
            "loss": the change of the test loss if training row j were left
            out. "perturbation": its derivative with respect to each feature
            of training row j (Koh & Liang's I_pert,loss), in loss units per
            unit of the feature, for the features the model's last step sees.

        Returns
        -------
        influence : ndarray of shape (n_test, n_train)
            Entry ``[i, j]`` estimates ``L(z_i; θ̂ without row j) − L(z_i; θ̂)``
            in the test loss's own units (squared error, log-loss, smooth
            hinge). Positive: row j helps test row i; negative: it hurts.
        (indices, values) : tuple of ndarrays of shape (n_test, abs(top_k))
            When ``top_k`` is given: training-row indices and their scores,
            most helpful first (``top_k > 0``) or most harmful first
            (``top_k < 0``).
        perturbation : ndarray of shape (n_test, n_train, n_features)
            With ``kind="perturbation"``; with ``top_k`` a tuple ``(rows,
            features, values)`` of arrays of shape (n_test, abs(top_k)).
        """
        _check_y_given(y, "score_influence")
        check_is_fitted(self, "theta_")
        if kind not in ("loss", "perturbation"):
            raise ValueError(
                f"kind must be 'loss' or 'perturbation'; got {kind!r}."
            )
        if kind == "perturbation":  # checks top_k against rows x features
            return self._engine.perturbation(self, X, y, top_k)
        top_k = self._check_top_k(top_k)
        L, finish, extra, n_out = self._engine.loss_left(self, X, y)
        return score_train_rows(
            L, self._engine.train_rows(self, L.shape[0]), finish=finish, top_k=top_k,
            n_jobs=self.n_jobs, verbose=self.verbose, n_out=n_out, extra=extra,
        )

    def _check_top_k(self, top_k, n=None, what="rows"):
        if top_k is None:
            return None
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k == 0:
            raise ValueError(
                f"top_k must be a non-zero integer (negative for the most "
                f"harmful {what}) or None; got {top_k!r}."
            )
        if n is None and abs(top_k) > self.n_train_:
            raise ValueError(
                f"abs(top_k)={abs(top_k)} exceeds the number of training rows "
                f"n_train_={self.n_train_}."
            )
        if n is not None and abs(top_k) > n:
            raise ValueError(
                f"abs(top_k)={abs(top_k)} exceeds the number of {what} ({n})."
            )
        return int(top_k)

    def influence_on_params(self, X, y, sample_weight=None):
        """Estimated parameter change ``θ̂_{-j} − θ̂`` if each row were left out.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_rows, n_features)
            Rows, raw; usually the training rows.
        y : array-like of shape (n_rows,)
            Their targets.
        sample_weight : array-like of shape (n_rows,), default=None
            Their weights in the training objective.

        Returns
        -------
        delta : ndarray of shape (n_rows, `n_params_`)
            Parameter changes in the layout of ``theta_`` (for each output its
            coefficients, then its intercept).
        """
        _check_y_given(y, "influence_on_params")
        check_is_fitted(self, "theta_")
        return self._engine.param_shifts(self, X, y, sample_weight)

    def group_influence(self, X, y, groups, *, n_steps=1, top_k=None):
        """Estimated change of each test loss if whole groups of rows were left out.

        Each group's training rows are left out together and the model
        refitted: a source, a labeller, a cluster.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_test, n_features)
            Test rows, raw.
        y : array-like of shape (n_test,)
            Their targets.
        groups : array-like of shape (n_train,) or bool array of shape \
                (n_groups, n_train)
            One label per training row (scikit-learn's ``groups``
            convention: a source, a labeller, a cluster), each distinct
            label a group, in ``np.unique(groups)`` order; or a boolean
            array (or sparse matrix) whose row g marks the training rows of
            group g, groups possibly overlapping. Either way the labels of
            the result's columns are stored in ``group_labels_``.
        n_steps : int, default=1
            With ``estimate="newton"``: the number of Newton steps taken on
            the model's own objective without the group, from the fitted
            parameters (the test losses are evaluated exactly at the
            result). One step is exact for least squares; more converge to
            the refit. Must be 1 with ``estimate="influence"``.
        top_k : int, default=None
            If given, return only the ``top_k`` most helpful groups of each
            test row (``-top_k``: the most harmful).

        Returns
        -------
        influence : ndarray of shape (n_test, n_groups)
            Entry ``[i, g]`` estimates ``L(z_i; θ̂ without group g) −
            L(z_i; θ̂)`` in the test loss's units: positive, group g helps
            test row i. ``estimate="influence"``: the sum of the group's
            rows' first-order influences (what
            :meth:`score_influence` gives, summed; it underestimates large
            or coherent groups, Koh et al. 2019). ``estimate="newton"``
            (GLM families): Newton-corrected, see Notes.
        (indices, values) : tuple of ndarrays of shape (n_test, abs(top_k))
            When ``top_k`` is given: group indices (columns of the full
            result, labelled by ``group_labels_``) and their scores, most
            helpful first (``top_k > 0``) or most harmful first.

        Raises
        ------
        ValueError
            For a group whose removal leaves the objective without a
            minimiser, naming the group: one that holds every training row,
            or every row of a class whose intercept is unpenalised (GLM
            classifiers), or one without which the Hessian is singular
            (Newton estimate).

        Notes
        -----
        ``estimate="newton"`` takes ``n_steps`` Newton steps of ``J_-G(θ) =
        J(θ) − Σ_{j∈G} s_j ℓ_j(θ)`` (sample and class weights included;
        under ``class_weight="balanced"`` the removal re-weights the rows
        left, as scikit-learn would on the subset) from θ̂, its gradient
        taken relative to ``∇J(θ̂)``: for a group of one row the first step
        is exactly :meth:`score_influence`'s Newton estimate. Each step
        solves with the Hessian without the group by conjugate gradients,
        preconditioned by the full-data factor (``method="direct"``): one
        pass over the training rows per iteration, no new factorisation,
        and iterations of the order of the group's rank of curvature.
        """
        from . import _groups

        _check_y_given(y, "group_influence")
        check_is_fitted(self, "theta_")
        masks, labels = _groups.check_groups(groups, self.n_train_)
        _groups.check_n_steps(n_steps, self.estimate)
        if top_k is not None:
            top_k = self._check_top_k(top_k, masks.shape[0], "groups")
        _groups.refuse_empty(masks, labels, self.n_train_)
        self._engine.check_group_removal(self, masks, labels)
        self.group_labels_ = labels
        if self.estimate == "newton":
            S = self._engine.group_newton(self, X, y, masks, labels, n_steps)
            return S if top_k is None else top_k_columns(S, top_k)
        L, finish, extra, n_out = self._engine.loss_left(self, X, y)
        return score_train_rows(
            L, self._engine.train_rows(self, L.shape[0]), finish=finish,
            top_k=top_k, n_jobs=self.n_jobs, verbose=self.verbose, n_out=n_out,
            extra=extra, groups=masks,
        )

    def self_influence(self, X=None, y=None, sample_weight=None):
        """Estimated increase of each row's own loss if it were left out.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_rows, n_features), default=None
            Rows, raw. None means the training rows (with their weights).
        y : array-like of shape (n_rows,), default=None
            Their targets; required with X.
        sample_weight : array-like of shape (n_rows,), default=None
            Their weights, when X is given.

        Returns
        -------
        self_influence : ndarray of shape (n_rows,)
            In the loss's units; large values flag mislabelled or atypical
            rows.
        """
        check_is_fitted(self, "theta_")
        if X is None and y is not None:
            raise ValueError("y was given without X; pass both or neither.")
        if X is not None and y is None:
            raise ValueError("self_influence needs y together with X.")
        return self._engine.self_influence(self, X, y, sample_weight)

    def transform(self, X):
        """Label-free influence of each training row on the output at X.

        The output is the decision value of the class the model predicts
        (for binary models the signed margin toward it; for regressors the
        prediction).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows, raw.

        Returns
        -------
        X_new : ndarray of shape (n_samples, `n_train_`)
            Entry ``[i, j]`` estimates ``f_i(θ̂) − f_i(θ̂ without row j)``:
            how much row j pushes the output toward the predicted class (or
            up, for regressors). Positive: row j supports the prediction.
        """
        check_is_fitted(self, "theta_")
        L, extra = self._engine.output_left(self, X)
        return score_train_rows(
            L, self._engine.train_rows(self, L.shape[0]), sign=-1, n_jobs=self.n_jobs,
            verbose=self.verbose, extra=extra,
        )

    @property
    def _n_features_out(self):
        return self.n_train_

    def get_feature_names_out(self, input_features=None):
        """Get the names of ``transform``'s columns, one per training row.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored: the columns are training rows, not input features.

        Returns
        -------
        feature_names_out : ndarray of str objects
            The training rows' index as strings when ``fit`` saw a pandas
            DataFrame (``train_index_``), else ``influenceestimator0``,
            ``influenceestimator1``, ...
        """
        check_is_fitted(self, "n_train_")
        index = getattr(self, "train_index_", None)
        if index is None:
            return super().get_feature_names_out(input_features)
        return np.asarray([str(i) for i in index], dtype=object)

    def to_frame(self, result, X=None):
        """Label a result with the rows it is about, as a pandas table.

        pandas is imported here only: it is not a dependency of skinfluence.
        Training rows are labelled by ``train_index_`` (when ``fit`` saw a
        DataFrame; else by position), test rows by ``X``'s index (a
        DataFrame; else by position).

        Parameters
        ----------
        result : ndarray or tuple
            What a method returned:

            - ``score_influence``, ``transform``: (n_test, n_train), a
              DataFrame with test rows as index and training rows as
              columns;
            - ``self_influence``: (n_rows,), a Series over training rows (or
              over ``X``'s rows, when given);
            - a ``top_k`` pair ``(rows, values)``: a long DataFrame with
              columns ``test_row``, ``rank`` (from 0), ``train_row`` and
              ``influence``;
            - ``kind="perturbation"``: the (n_test, n_train, n_features)
              array as a DataFrame whose columns are (training row,
              feature) pairs; its ``top_k`` triple ``(rows, features,
              values)`` as a long DataFrame with a ``feature`` column. The
              features are the model's inputs, named by
              ``feature_names_in_`` or, in a Pipeline, by the feature steps'
              ``get_feature_names_out``.
        X : array-like or DataFrame, default=None
            The test rows ``result`` was computed on.

        Returns
        -------
        frame : pandas.DataFrame or pandas.Series
            The values of ``result``, indexed and named as described for
            each kind of result.
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is installed in CI
            raise ImportError("to_frame needs pandas: pip install pandas.") from exc
        check_is_fitted(self, "n_train_")
        train = getattr(self, "train_index_", np.arange(self.n_train_))
        train = pd.Index(train, name="train_row")

        def test_index(n):
            index = X.index if _is_frame(X) else pd.RangeIndex(n)
            if len(index) != n:
                raise ValueError(f"X has {len(index)} rows but the result has {n}.")
            return pd.Index(index, name="test_row")

        if isinstance(result, tuple):
            *rows, values = (np.asarray(r) for r in result)
            n_test, k = values.shape
            table = {"test_row": np.repeat(test_index(n_test), k),
                     "rank": np.tile(np.arange(k), n_test),
                     "train_row": train[rows[0].ravel()]}
            if len(rows) == 2:
                table["feature"] = self._perturbation_features()[rows[1].ravel()]
            table["influence"] = values.ravel()
            return pd.DataFrame(table)
        result = np.asarray(result)
        if result.ndim == 1:
            index = test_index(len(result)) if X is not None else train
            if X is None and len(result) != self.n_train_:
                raise ValueError(f"A 1-D result over training rows has "
                                 f"{self.n_train_} entries; got {len(result)}.")
            return pd.Series(result, index=index, name="influence")
        if result.shape[1] != self.n_train_:
            raise ValueError(
                f"result's second axis has {result.shape[1]} entries, not one per "
                f"training row ({self.n_train_}).")
        if result.ndim == 3:
            columns = pd.MultiIndex.from_product(
                [train, pd.Index(self._perturbation_features(), name="feature")])
            return pd.DataFrame(result.reshape(result.shape[0], -1),
                                index=test_index(result.shape[0]), columns=columns)
        return pd.DataFrame(result, index=test_index(result.shape[0]), columns=train)

    def _perturbation_features(self):
        """Names of the features the model's parameters act on."""
        feature_map = getattr(self, "_feature_map", None)
        if feature_map is not None:
            try:
                return np.asarray(feature_map.get_feature_names_out(), dtype=object)
            except (AttributeError, ValueError, TypeError):
                pass
        elif hasattr(self, "feature_names_in_"):
            return np.asarray(self.feature_names_in_, dtype=object)
        n = self._adapter.coef.shape[1]
        return np.asarray([f"x{i}" for i in range(n)], dtype=object)

    # ------------------------------------------------------------ delegation
    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with the fitted model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows, raw.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The model's predictions.
        """
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self._validate_X(X, reset=False))

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the fitted model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows, raw.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            The model's class probabilities.
        """
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self._validate_X(X, reset=False))

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities of the fitted model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows, raw.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            The model's log class probabilities.
        """
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_log_proba(self._validate_X(X, reset=False))

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the fitted model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows, raw.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The model's decision values.
        """
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(self._validate_X(X, reset=False))

    @available_if(_estimator_has("score"))
    def score(self, X, y, sample_weight=None):
        """The fitted model's own score (accuracy or R²) on (X, y).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows, raw.
        y : array-like of shape (n_samples,)
            True targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            The wrapped model's ``score``.
        """
        check_is_fitted(self, "estimator_")
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return self.estimator_.score(self._validate_X(X, reset=False), y, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self.estimator
        if type(inner).__name__ == "FrozenEstimator":
            inner = inner.estimator
        inner_tags = inner.__sklearn_tags__()
        tags.estimator_type = inner_tags.estimator_type
        tags.classifier_tags = inner_tags.classifier_tags
        if tags.classifier_tags is not None:  # one label per row only
            tags.classifier_tags.multi_label = False
        tags.regressor_tags = inner_tags.regressor_tags
        tags.input_tags.sparse = inner_tags.input_tags.sparse
        tags.target_tags.positive_only = inner_tags.target_tags.positive_only
        tags.target_tags.required = True
        return tags


def _is_frame(X):
    """Whether X is a pandas DataFrame (without importing pandas)."""
    return hasattr(X, "columns") and hasattr(X, "index") and hasattr(X, "iloc")
