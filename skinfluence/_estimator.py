"""InfluenceEstimator: influence functions for a fitted scikit-learn model."""

import warnings
from numbers import Integral, Real

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    MetaEstimatorMixin,
    TransformerMixin,
    clone,
    is_classifier,
)
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _newton
from ._perturbation import perturbation_influence
from ._scoring import FactoredRows, NewtonLossChange, score_train_rows
from ._stationarity import STATIONARITY_RATIO, stationarity_ratio
from ._torch_path import (
    fit_torch,
    influence_on_params_torch,
    is_torch_model,
    score_torch,
    self_influence_torch,
    transform_torch,
)
from .models import check_supported, get_adapter, split_pipeline
from .models._glm import kron_rows
from .solvers import choose, make_solver
from .utils._compat import (
    HasMethods,
    Interval,
    StrOptions,
    _check_sample_weight,
    _fit_context,
)
from .utils._validation import check_features, check_targets, fingerprint


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
        step's coefficients and intercepts).
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
        other sample weights, SGD, a loose ``tol``). GLMs only.
    theta_ : ndarray of shape (`n_params_`,)
        Fitted parameters at ``fit`` time, coefficients then intercept for
        each output.

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
        y = np.asarray(y)
        est = self.estimator
        if type(est).__name__ == "FrozenEstimator":
            est = est.estimator
        # torch models (TorchModel, skorch nets) take the autograd path, with
        # y as the module's loss takes it (a column for skorch regressors).
        self._torch = is_torch_model(est)
        if self._torch:
            if sample_weight is not None:
                raise ValueError("sample_weight is not supported for torch models.")
            return fit_torch(self, est, X, y)
        y = check_targets(y, classifier=is_classifier(est))
        try:
            check_is_fitted(est)
            fitted = True
        except NotFittedError:
            fitted = False
        X_checked = self._validate_X(X, reset=True)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X_checked)
        check_supported(split_pipeline(est)[1])
        if fitted:
            self.estimator_ = est
        else:
            self.estimator_ = clone(est)
            fit_params = {}
            if sample_weight is not None:
                key = "sample_weight"
                if isinstance(self.estimator_, Pipeline):
                    key = f"{self.estimator_.steps[-1][0]}__sample_weight"
                fit_params[key] = sample_weight
            self.estimator_.fit(X, y, **fit_params)

        self._feature_map, model = split_pipeline(self.estimator_)
        if hasattr(self.estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.estimator_.feature_names_in_
        if isinstance(self.estimator_, Pipeline) and hasattr(
            self.estimator_, "n_features_in_"
        ):
            self.n_features_in_ = self.estimator_.n_features_in_

        Xt = self._model_features(X_checked)
        # After one transform: the state that later transforms see.
        self._feature_fingerprint = self._fingerprint_features()
        if self._feature_map is not None and self._feature_fingerprint is None:
            warnings.warn(
                "The Pipeline's feature steps cannot be pickled, so a step "
                "refitted after InfluenceEstimator.fit will go undetected.",
                UserWarning, stacklevel=3,
            )
        n_train = Xt.shape[0]
        if y.shape[0] != n_train:
            raise ValueError(
                f"X has {n_train} rows but y has {y.shape[0]}; they must match."
            )
        self._adapter = get_adapter(
            model, y=y, sample_weight=sample_weight, n_train=n_train, t=self.t
        )
        adapter = self._adapter
        if adapter.classes is not None:
            self.classes_ = adapter.classes
        Z = adapter.features(Xt)
        y_enc = adapter.encode_y(y)
        if adapter.classes is None and not np.all(np.isfinite(y_enc)):
            raise ValueError("Input y contains NaN or infinity.")
        s = adapter.row_scale(y_enc, sample_weight)
        raw = adapter.raw_prediction(Z)
        grad, hess = adapter.pointwise_grad_hess(y_enc, raw)

        self.n_train_ = n_train
        self.n_params_ = adapter.n_params
        self.theta_ = adapter.theta

        if self.method == "ekfac":
            raise ValueError(
                "method='ekfac' applies to torch models (Kronecker-factored "
                "layers); for this linear model use 'direct' or 'auto'."
            )
        n_threads = effective_n_jobs(self.n_jobs)
        null_space = adapter.null_space()
        params = self.solver_params or {}
        if "form" in params and self.method != "direct":
            raise ValueError(
                "solver_params['form'] ('primal' or 'dual') applies to "
                f"method='direct'; got method={self.method!r}."
            )
        self.method_, form, choice = choose(
            self.method, adapter.n_params, adapter.gram_structure(Z, s, hess),
            damping=self.damping, null_space=null_space,
            newton=self.estimate == "newton", form=params.get("form"),
        )
        solver = make_solver(
            self.method_, damping=self.damping, tol=self.tol,
            random_state=self.random_state, solver_params=self.solver_params,
            n_threads=n_threads, form=form,
        )
        # The primal direct solver sees the dense Hessian; the others its
        # products (and the dual one its Gram structure).
        H = (adapter.hessian(Z, s, hess) if form == "primal"
             else adapter.hessian_operator(Z, s, hess, n_threads=n_threads))
        solver.fit(H, null_space=null_space)
        del H  # the primal solver keeps its factor, not the Hessian
        self._solver = solver
        # The solver's own record: each later solve updates it.
        self.solver_info_ = solver.info_
        self.solver_info_["choice"] = choice
        self._check_stationarity(Z, y_enc, s, grad, model)

        self._Z, self._y, self._s = Z, y_enc, s
        self._raw = raw
        self._w_train = (np.ones(n_train) if sample_weight is None
                         else sample_weight)
        self._class_grad = self._class_shift = None
        if adapter.balanced is not None:
            # Leaving a row out re-balances the class weights of all others.
            G = adapter.class_gradients(Z, y_enc, s, grad)
            self._class_grad = G
            self._class_shift = solver.solve(G)
        self._W, self._E, self._A = self._row_terms(
            Z, y_enc, s, grad, hess, self._w_train
        )
        return self

    def _row_terms(self, Z, y_enc, s, grad, hess, w):
        """What the chosen estimate needs of rows treated as training rows.

        Returns ``W`` (n, K): the row's parameter shift is
        ``H^-1 sum_k W[j, k] e_k (x) z_j``; ``E`` (n, n_classes) or None: the
        coefficients of the class-reweighting directions ``H^-1 G``; and the
        diagonal blocks ``A_jj`` (n, K, K), computed for "newton" only.
        """
        a = self._adapter
        bal = a.balanced
        A = None
        if self.estimate == "newton":
            A = _newton.diag_blocks(self._solver, Z, a.n_outputs)
        if bal is None:
            if A is None:
                return s[:, None] * grad, None, None
            return _newton.newton_weights(A, s, grad, hess), None, A
        if A is None:
            return s[:, None] * grad, -bal.derivative(y_enc, w), None
        delta, own = bal.removal(y_enc, w)
        s_own = own * s
        # H_{-j} keeps the row's own rank-K term; the others' reweighting
        # enters through the gradient (its effect on H is neglected).
        r = self._class_raw_shift(Z)
        rhs = s_own[:, None] * (grad - np.einsum(
            "jkl,jlc,jc->jk", hess, r, delta))
        return _newton.newton_weights(A, s_own, grad, hess, rhs=rhs), -delta, A

    def _class_raw_shift(self, Z):
        """Raw-prediction shifts (n, K, n_classes) of the directions H^-1 G."""
        K = self._adapter.n_outputs
        HG = self._class_shift
        return np.stack(
            [np.asarray(Z @ HG[:, c].reshape(K, -1).T)
             for c in range(HG.shape[1])], axis=2,
        )

    def _extra(self, L):
        """The low-rank class-reweighting term for left rows L, or None."""
        if self._E is None:
            return None
        return L @ self._class_grad, self._E

    def _check_stationarity(self, Z, y_enc, s, grad, model):
        """Warn when theta-hat is far from a minimiser of J on (X, y).

        Far: the Newton step to the minimiser is longer, in the metric of H,
        than a typical row's influence (see :mod:`skinfluence._stationarity`).
        """
        ratio, offset, _ = stationarity_ratio(
            self._adapter, self._solver, Z, y_enc, s, grad)
        self.stationarity_ = ratio
        if ratio > STATIONARITY_RATIO:
            n_iter = getattr(model, "n_iter_", None)
            hint = f" (its n_iter_ is {np.ravel(n_iter).tolist()})" if (
                n_iter is not None) else ""
            kind = "" if self._adapter.smooth else "sub"
            warnings.warn(
                f"{type(model).__name__}'s fitted parameters are not a minimum of "
                f"its training objective on these (X, y, sample_weight): the "
                f"Newton step to the minimum is {ratio:.3g} times a typical "
                "row's influence (both in the metric of H), from a "
                f"{kind}gradient of norm {offset:.3g} in H^-1. A model retrained "
                "to convergence moves that far whichever row it leaves out, and "
                "influence is taken at the fitted parameters, not at the "
                "minimum. The model does not look trained on this data (or with "
                f"these sample weights), or it did not converge{hint}. Refit it "
                "on (X, y) with a tighter tol or a larger max_iter.",
                ConvergenceWarning,
                stacklevel=4,
            )

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

    def _model_features(self, X):
        """Features the last step sees, checked once."""
        model = self._last_step()
        Xt = X if self._feature_map is None else self._feature_map.transform(X)
        return check_features(Xt, getattr(model, "n_features_in_", None),
                              name=type(model).__name__)

    def _last_step(self):
        return split_pipeline(self.estimator_)[1]

    def _prepare(self, X, y=None, sample_weight=None):
        """Features, encoded labels, raw predictions of (X, y) after fit."""
        check_is_fitted(self, "theta_")
        self._check_unchanged()
        X = self._validate_X(X, reset=False)
        Z = self._adapter.features(self._model_features(X))
        raw = self._adapter.raw_prediction(Z)
        if y is None:
            return Z, None, raw
        y = check_targets(y, Z.shape[0], classifier=self._adapter.classes is not None)
        y_enc = self._adapter.encode_y(y)
        if self._adapter.classes is None and not np.all(np.isfinite(y_enc)):
            raise ValueError("Input y contains NaN or infinity.")
        return Z, y_enc, raw

    def _check_unchanged(self):
        current = self._adapter.read_theta()
        if current.shape != self.theta_.shape or not np.array_equal(
            current, self.theta_
        ):
            raise ValueError(
                "The wrapped estimator's parameters changed since "
                "InfluenceEstimator.fit (was it refitted?); call fit again."
            )
        fitted = getattr(self, "_feature_fingerprint", None)
        if fitted is not None and self._fingerprint_features() != fitted:
            raise ValueError(
                "The Pipeline's feature steps changed since InfluenceEstimator.fit "
                "(was a step refitted?); call fit again."
            )

    def _fingerprint_features(self):
        """Digest of the feature steps' state now, or None without any."""
        feature_map = split_pipeline(self.estimator_)[0]
        return None if feature_map is None else fingerprint(feature_map)

    # ------------------------------------------------------------ scoring
    def _left(self, Z, G):
        """Rows ``H^-1 (G_i (x) z_i)`` for test rows: shape (n_test, n_params)."""
        return self._solver.solve(kron_rows(G, Z).T).T

    def _left_newton(self, Z):
        """Rows ``(e_k (x) z_i)' H^-1`` for every test row and output k.

        With ``H^-1`` at hand (the primal direct solver) they are its row
        blocks against Z: K products instead of n K solves.
        """
        K = self._adapter.n_outputs
        n = Z.shape[0]
        if hasattr(self._solver, "inverse"):
            Hinv = self._solver.inverse()
            rows = Hinv.reshape(K, -1, Hinv.shape[1])
            L = np.empty((n, K, Hinv.shape[1]))
            for k in range(K):
                L[:, k, :] = Z @ rows[k]
            return L.reshape(n * K, -1)
        eye = np.broadcast_to(np.eye(K), (n, K, K)).reshape(n * K, K)
        Zrep = Z[np.repeat(np.arange(n), K)]
        return self._left(Zrep, eye)

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
        if getattr(self, "_torch", False):
            return score_torch(self, X, y, top_k=top_k, kind=kind)
        if kind not in ("loss", "perturbation"):
            raise ValueError(
                f"kind must be 'loss' or 'perturbation'; got {kind!r}."
            )
        if kind == "perturbation":  # checks top_k against rows x features
            return perturbation_influence(self, X, y, top_k=top_k)
        top_k = self._check_top_k(top_k)
        Z, y_enc, raw = self._prepare(X, y)
        a = self._adapter
        if self.estimate == "newton":
            L = self._left_newton(Z)
            finish = NewtonLossChange(a.loss, y_enc, raw)
        else:
            L = self._left(Z, a.user_grad(y_enc, raw))
            finish = None
        return score_train_rows(
            L, FactoredRows(self._Z, self._W), finish=finish, top_k=top_k,
            n_jobs=self.n_jobs, verbose=self.verbose, n_out=Z.shape[0],
            extra=self._extra(L),
        )

    def _check_top_k(self, top_k):
        if top_k is None:
            return None
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k == 0:
            raise ValueError(
                f"top_k must be a non-zero integer (negative for the most "
                f"harmful rows) or None; got {top_k!r}."
            )
        if abs(top_k) > self.n_train_:
            raise ValueError(
                f"abs(top_k)={abs(top_k)} exceeds the number of training rows "
                f"n_train_={self.n_train_}."
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
        if getattr(self, "_torch", False):
            return influence_on_params_torch(self, X, y, sample_weight)
        W, E, _, Z, _, _ = self._terms_for(X, y, sample_weight)
        delta = _newton.param_shifts(self._solver, Z, W)
        if E is not None:
            delta += E @ self._class_shift.T
        return delta

    def _terms_for(self, X, y, sample_weight):
        """Row terms of (X, y) treated as training rows of weight sample_weight."""
        Z, y_enc, raw = self._prepare(X, y)
        w = (np.ones(Z.shape[0]) if sample_weight is None
             else _check_sample_weight(sample_weight, Z))
        a = self._adapter
        grad, hess = a.pointwise_grad_hess(y_enc, raw)
        W, E, A = self._row_terms(Z, y_enc, a.row_scale(y_enc, w), grad, hess, w)
        return W, E, A, Z, y_enc, raw

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
        if getattr(self, "_torch", False):
            return self_influence_torch(self, X, y, sample_weight)
        a = self._adapter
        if X is None:
            if y is not None:
                raise ValueError("y was given without X; pass both or neither.")
            self._check_unchanged()
            Z, y_enc, raw = self._Z, self._y, self._raw
            W, E, A = self._W, self._E, self._A
        else:
            if y is None:
                raise ValueError("self_influence needs y together with X.")
            W, E, A, Z, y_enc, raw = self._terms_for(X, y, sample_weight)
        if A is None:
            A = _newton.diag_blocks(self._solver, Z, a.n_outputs)
        shift = np.einsum("jkl,jl->jk", A, W)
        if E is not None:
            shift += np.einsum("jkc,jc->jk", self._class_raw_shift(Z), E)
        if self.estimate == "newton":
            return a.loss_from_raw(y_enc, raw + shift) - a.loss_from_raw(y_enc, raw)
        return np.sum(a.user_grad(y_enc, raw) * shift, axis=1)

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
        if getattr(self, "_torch", False):
            return transform_torch(self, X)
        Z, _, raw = self._prepare(X)
        L = self._left(Z, self._output_grad(raw))
        return score_train_rows(
            L, FactoredRows(self._Z, self._W), sign=-1, n_jobs=self.n_jobs,
            verbose=self.verbose, extra=self._extra(L),
        )

    def _output_grad(self, raw):
        """Gradient of the measured output with respect to raw predictions."""
        n, K = raw.shape
        if self._adapter.classes is None:
            return np.ones((n, K))
        if K == 1:
            return np.where(raw >= 0, 1.0, -1.0) if len(self.classes_) == 2 else (
                np.ones((n, 1)))
        G = np.zeros((n, K))
        G[np.arange(n), np.argmax(raw, axis=1)] = 1.0
        return G

    @property
    def _n_features_out(self):
        return self.n_train_

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
        tags.regressor_tags = inner_tags.regressor_tags
        tags.input_tags.sparse = inner_tags.input_tags.sparse
        tags.target_tags.required = True
        return tags
