"""What InfluenceEstimator computes for GLM families (linear, logistic, SVM).

The GLM side of the one internal interface both families implement (see
:class:`skinfluence._engine.Engine`): the training rows' gradients held
factored, ``W[j] (x) Z[j]``; test rows' gradients ``G_i (x) z_i`` solved
against the factorised (or iterated) Hessian; the loss at moved parameters
exact for the Newton estimate. State lives on the estimator (``_adapter``,
``_solver``, ``_Z``, ``_W``, ...), as for the torch engine.
"""

import warnings

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from . import _groups, _newton
from ._engine import Engine, fit_clone
from ._perturbation import perturbation_influence
from ._scoring import FactoredRows, NewtonLossChange
from ._stationarity import STATIONARITY_RATIO, stationarity_ratio
from .models import check_supported, get_adapter, split_pipeline
from .models._glm import kron_rows
from .solvers import choose, make_solver
from .utils._compat import _check_sample_weight
from .utils._validation import check_features, check_targets, fingerprint


class GLMEngine(Engine):
    """Analytic gradients and Hessians of a GLM's own objective."""

    family = "GLM"

    def fit(self, est, given, X, y, sample_weight):
        """Fit ``est`` for the GLM ``given`` (fitted or not) on (X, y)."""
        y = check_targets(y, classifier=is_classifier(given))
        try:
            check_is_fitted(given)
            fitted = True
        except NotFittedError:
            fitted = False
        X_checked = est._validate_X(X, reset=True)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X_checked)
        check_supported(split_pipeline(given)[1])
        if fitted:
            est.estimator_ = given
        else:
            est.estimator_ = fit_clone(given, X, y, sample_weight)

        est._feature_map, model = split_pipeline(est.estimator_)
        if hasattr(est.estimator_, "feature_names_in_"):
            est.feature_names_in_ = est.estimator_.feature_names_in_
        if isinstance(est.estimator_, Pipeline) and hasattr(
            est.estimator_, "n_features_in_"
        ):
            est.n_features_in_ = est.estimator_.n_features_in_

        Xt = self._model_features(est, X_checked)
        # After one transform: the state that later transforms see.
        est._feature_fingerprint = self._fingerprint_features(est)
        if est._feature_map is not None and est._feature_fingerprint is None:
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
        est._adapter = get_adapter(
            model, y=y, sample_weight=sample_weight, n_train=n_train, t=est.t
        )
        adapter = est._adapter
        if adapter.classes is not None:
            est.classes_ = adapter.classes
        Z = adapter.features(Xt)
        y_enc = adapter.encode_y(y)
        if adapter.classes is None and not np.all(np.isfinite(y_enc)):
            raise ValueError("Input y contains NaN or infinity.")
        s = adapter.row_scale(y_enc, sample_weight)
        raw = adapter.raw_prediction(Z)
        grad, hess = adapter.pointwise_grad_hess(y_enc, raw)

        if est.estimate == "newton" and not adapter.newton:
            raise ValueError(
                f"estimate='newton' is not offered for {type(model).__name__}: "
                "its loss is once differentiable only, so a Newton step "
                "without a row is not better founded than first order (see "
                "the user guide); use estimate='influence'.")
        est.n_train_ = n_train
        est.theta_ = adapter.parameters()
        est.n_params_ = est.theta_.size
        if hasattr(adapter, "active"):  # l1 models: the parameters' features
            est.active_set_ = adapter.active

        if est.method == "ekfac":
            raise ValueError(
                "method='ekfac' applies to torch models (Kronecker-factored "
                "layers); for this linear model use 'direct' or 'auto'."
            )
        n_threads = effective_n_jobs(est.n_jobs)
        null_space = adapter.null_space()
        params = est.solver_params or {}
        if "form" in params and est.method != "direct":
            raise ValueError(
                "solver_params['form'] ('primal' or 'dual') applies to "
                f"method='direct'; got method={est.method!r}."
            )
        est.method_, form, choice = choose(
            est.method, adapter.n_params, adapter.gram_structure(Z, s, hess),
            damping=est.damping, null_space=null_space,
            newton=est.estimate == "newton", form=params.get("form"),
        )
        solver = make_solver(
            est.method_, damping=est.damping, tol=est.tol,
            random_state=est.random_state, solver_params=est.solver_params,
            n_threads=n_threads, form=form,
        )
        # The primal direct solver sees the dense Hessian; the others its
        # products (and the dual one its Gram structure).
        H = (adapter.hessian(Z, s, hess) if form == "primal"
             else adapter.hessian_operator(Z, s, hess, n_threads=n_threads))
        solver.fit(H, null_space=null_space)
        del H  # the primal solver keeps its factor, not the Hessian
        est._solver = solver
        # The solver's own record: each later solve updates it.
        est.solver_info_ = solver.info_
        est.solver_info_["choice"] = choice
        est._coupling = None
        if adapter.joint_scale:
            est._coupling = self._scale_coupling(adapter, solver, Z, y_enc, s, raw)
        self._check_stationarity(est, Z, y_enc, s, grad, model)

        est._Z, est._y, est._s = Z, y_enc, s
        est._raw = raw
        est._w_train = (np.ones(n_train) if sample_weight is None
                         else sample_weight)
        est._class_grad = est._class_shift = None
        if est._coupling is not None:
            # sigma's border c of H enters as a class re-weighting's
            # gradient sum would: rows move theta by A^-1 c too.
            c, u, _ = est._coupling
            est._class_grad, est._class_shift = c[:, None], u[:, None]
        if adapter.reweighting is not None:
            # Leaving a row out re-balances the class weights of all others.
            G = adapter.class_gradients(Z, y_enc, s, grad)
            est._class_grad = G
            est._class_shift = solver.solve(G)
        est._W, est._E, est._A = self._row_terms(est,
            Z, y_enc, s, grad, hess, est._w_train
        )

    # ------------------------------------------------- the shared interface
    def loss_left(self, est, X, y):
        Z, y_enc, raw = self._prepare(est, X, y)
        a = est._adapter
        if est.estimate == "newton":
            L = self._left_newton(est, Z)
            finish = NewtonLossChange(a.loss, y_enc, raw)
        else:
            L = self._left(est, Z, a.user_grad(y_enc, raw))
            finish = None
        extra = self._extra(est, L)
        if a.joint_scale:
            # The test loss moves with sigma too: q_i ds_j, ds_j = -E_j.
            q = a.scale_terms(y_enc, raw)[0]
            extra = (extra[0] - q[:, None], extra[1])
        return L, finish, extra, Z.shape[0]

    def output_left(self, est, X):
        Z, _, raw = self._prepare(est, X)
        L = self._left(est, Z, self._output_grad(est, raw))
        return L, self._extra(est, L)

    def train_rows(self, est, n_left):
        return FactoredRows(est._Z, est._W)

    def param_shifts(self, est, X, y, sample_weight):
        W, E, _, Z, _, _ = self._terms_for(est, X, y, sample_weight)
        delta = _newton.param_shifts(est._solver, Z, W)
        if E is not None:
            delta += E @ est._class_shift.T
        if est._adapter.joint_scale:
            delta = np.hstack([delta, -E])  # sigma's shift, last
        return delta

    def self_influence(self, est, X, y, sample_weight):
        a = est._adapter
        if X is None:
            self._check_unchanged(est)
            Z, y_enc, raw = est._Z, est._y, est._raw
            W, E, A = est._W, est._E, est._A
        else:
            W, E, A, Z, y_enc, raw = self._terms_for(est, X, y, sample_weight)
        if A is None:
            A = _newton.diag_blocks(est._solver, Z, a.n_outputs)
        shift = np.einsum("jkl,jl->jk", A, W)
        if E is not None:
            shift += np.einsum("jkc,jc->jk", self._class_raw_shift(est, Z), E)
        if est.estimate == "newton":
            return a.loss_from_raw(y_enc, raw + shift) - a.loss_from_raw(y_enc, raw)
        out = np.sum(a.user_grad(y_enc, raw) * shift, axis=1)
        if a.joint_scale:  # and through sigma's shift -E_j
            out -= a.scale_terms(y_enc, raw)[0] * E[:, 0]
        return out

    def perturbation(self, est, X, y, top_k):
        if est._adapter.joint_scale:
            raise ValueError(
                "kind='perturbation' is not supported for HuberRegressor: a "
                "feature's nudge moves its scale sigma too, which the "
                "perturbation algebra (over the weights alone) does not "
                "carry. Use kind='removal'.")
        if not est._adapter.raw_features:
            raise ValueError(
                "kind='perturbation' differentiates through features that are "
                "the model's inputs; "
                f"{type(self._last_step(est)).__name__}'s parameters act on "
                "derived ones (kernel eigenfeatures, an active set), which is "
                "not supported.")
        return perturbation_influence(est, X, y, top_k=top_k)

    def check_group_removal(self, est, masks, labels):
        _groups.refuse_lost_class(est._adapter, est._y, est._w_train, masks, labels)

    def group_newton(self, est, X, y, masks, labels, n_steps):
        Z, y_enc, _ = self._prepare(est, X, y)
        thetas = _groups.newton_thetas(est, masks, labels, n_steps)
        return _groups.newton_loss_changes(est, Z, y_enc, thetas)

    # ------------------------------------------------------------- helpers
    def _row_terms(self, est, Z, y_enc, s, grad, hess, w):
        """What the chosen estimate needs of rows treated as training rows.

        Returns ``W`` (n, K): the row's parameter shift is
        ``H^-1 sum_k W[j, k] e_k (x) z_j``; ``E`` (n, n_classes) or None: the
        coefficients of the class-reweighting directions ``H^-1 G``; and the
        diagonal blocks ``A_jj`` (n, K, K), computed for "newton" only.
        """
        a = est._adapter
        bal = a.reweighting
        A = None
        if est.estimate == "newton":
            A = _newton.diag_blocks(est._solver, Z, a.n_outputs)
        if a.joint_scale:  # HuberRegressor: no Newton, no re-weighting
            return s[:, None] * grad, self._scale_rows(est, Z, y_enc, s, grad), None
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
        r = self._class_raw_shift(est, Z)
        rhs = s_own[:, None] * (grad - np.einsum(
            "jkl,jlc,jc->jk", hess, r, delta))
        return _newton.newton_weights(A, s_own, grad, hess, rhs=rhs), -delta, A

    def _scale_coupling(self, adapter, solver, Z, y_enc, s, raw):
        """sigma's border of H: ``(c, u = A^-1 c, delta = d - c'u)``.

        ``delta`` is the Schur complement of the GLM block A in H: the
        curvature of J in sigma with theta_f re-optimised; it is positive
        where H is positive definite (some inlier with a non-zero residual).
        """
        c, d = adapter.coupling(Z, y_enc, s, raw)
        u = solver.solve(c[:, None])[:, 0]
        delta = d - c @ u
        if not delta > 1e-9 * max(d, 1e-300):
            raise ValueError(
                f"{type(adapter.fitted_model()).__name__}'s scale sigma="
                f"{adapter.sigma:.3g} is not identified on these rows "
                f"(n_samples={Z.shape[0]}): the "
                "curvature of its objective in sigma, with the weights "
                f"re-optimised, is {delta:.3g} (of {d:.3g}). The inliers are "
                "fitted (almost) exactly, where sigma collapses toward 0 and "
                "the objective has no twice-differentiable minimum, so "
                "influence is undefined. Use Ridge, or data with noise.")
        return c, u, delta

    def _scale_rows(self, est, Z, y_enc, s, grad):
        """``E`` (n, 1) of rows of gradient ``(s g z, s q)``: ``-ds_j``."""
        a = est._adapter
        c, u, delta = est._coupling
        q = a.scale_terms(y_enc, a.raw_prediction(Z))[0]
        ds = (s * q - s * grad[:, 0] * np.asarray(Z @ u).ravel()) / delta
        return -ds[:, None]

    def _class_raw_shift(self, est, Z):
        """Raw-prediction shifts (n, K, n_classes) of the directions H^-1 G."""
        K = est._adapter.n_outputs
        HG = est._class_shift
        return np.stack(
            [np.asarray(Z @ HG[:, c].reshape(K, -1).T)
             for c in range(HG.shape[1])], axis=2,
        )

    def _extra(self, est, L):
        """The low-rank class-reweighting term for left rows L, or None."""
        if est._E is None:
            return None
        return L @ est._class_grad, est._E

    def _check_stationarity(self, est, Z, y_enc, s, grad, model):
        """Warn when theta-hat is far from a minimiser of J on (X, y).

        Far: the Newton step to the minimiser is longer, in the metric of H,
        than a typical row's influence (see :mod:`skinfluence._stationarity`).
        """
        ratio, offset, _ = stationarity_ratio(
            est._adapter, est._solver, Z, y_enc, s, grad, est._coupling)
        est.stationarity_ = ratio
        if ratio > STATIONARITY_RATIO:
            n_iter = getattr(model, "n_iter_", None)
            hint = f" (its n_iter_ is {np.ravel(n_iter).tolist()})" if (
                n_iter is not None) else ""
            kind = "" if est._adapter.smooth else "sub"
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

    def _model_features(self, est, X):
        """Features the last step sees, checked once."""
        model = self._last_step(est)
        Xt = X if est._feature_map is None else est._feature_map.transform(X)
        return check_features(Xt, getattr(model, "n_features_in_", None),
                              name=type(model).__name__)

    def _last_step(self, est):
        return split_pipeline(est.estimator_)[1]

    def _prepare(self, est, X, y=None, sample_weight=None):
        """Features, encoded labels, raw predictions of (X, y) after fit."""
        check_is_fitted(est, "theta_")
        self._check_unchanged(est)
        X = est._validate_X(X, reset=False)
        Z = est._adapter.features(self._model_features(est, X))
        raw = est._adapter.raw_prediction(Z)
        if y is None:
            return Z, None, raw
        y = check_targets(y, Z.shape[0], classifier=est._adapter.classes is not None)
        y_enc = est._adapter.encode_y(y)
        if est._adapter.classes is None and not np.all(np.isfinite(y_enc)):
            raise ValueError("Input y contains NaN or infinity.")
        return Z, y_enc, raw

    def _check_unchanged(self, est):
        current = est._adapter.read_theta()
        if current.shape != est.theta_.shape or not np.array_equal(
            current, est.theta_
        ):
            raise ValueError(
                "The wrapped estimator's parameters changed since "
                "InfluenceEstimator.fit (was it refitted?); call fit again."
            )
        fitted = getattr(est, "_feature_fingerprint", None)
        if fitted is not None and self._fingerprint_features(est) != fitted:
            raise ValueError(
                "The Pipeline's feature steps changed since InfluenceEstimator.fit "
                "(was a step refitted?); call fit again."
            )

    def _fingerprint_features(self, est):
        """Digest of the feature steps' state now, or None without any."""
        feature_map = split_pipeline(est.estimator_)[0]
        return None if feature_map is None else fingerprint(feature_map)

    # ------------------------------------------------------------ scoring
    def _left(self, est, Z, G):
        """Rows ``H^-1 (G_i (x) z_i)`` for test rows: shape (n_test, n_params)."""
        return est._solver.solve(kron_rows(G, Z).T).T

    def _left_newton(self, est, Z):
        """Rows ``(e_k (x) z_i)' H^-1`` for every test row and output k.

        With ``H^-1`` at hand (the primal direct solver) they are its row
        blocks against Z: K products instead of n K solves.
        """
        K = est._adapter.n_outputs
        n = Z.shape[0]
        if hasattr(est._solver, "inverse"):
            Hinv = est._solver.inverse()
            rows = Hinv.reshape(K, -1, Hinv.shape[1])
            L = np.empty((n, K, Hinv.shape[1]))
            for k in range(K):
                L[:, k, :] = Z @ rows[k]
            return L.reshape(n * K, -1)
        eye = np.broadcast_to(np.eye(K), (n, K, K)).reshape(n * K, K)
        Zrep = Z[np.repeat(np.arange(n), K)]
        return self._left(est, Zrep, eye)

    def _terms_for(self, est, X, y, sample_weight):
        """Row terms of (X, y) treated as training rows of weight sample_weight."""
        Z, y_enc, raw = self._prepare(est, X, y)
        w = (np.ones(Z.shape[0]) if sample_weight is None
             else _check_sample_weight(sample_weight, Z))
        a = est._adapter
        grad, hess = a.pointwise_grad_hess(y_enc, raw)
        W, E, A = self._row_terms(est, Z, y_enc, a.row_scale(y_enc, w), grad, hess, w)
        return W, E, A, Z, y_enc, raw

    def _output_grad(self, est, raw):
        """Gradient of the measured output with respect to raw predictions."""
        n, K = raw.shape
        if est._adapter.classes is None:
            return np.ones((n, K))
        if K == 1:
            return np.where(raw >= 0, 1.0, -1.0) if len(est.classes_) == 2 else (
                np.ones((n, 1)))
        G = np.zeros((n, K))
        G[np.arange(n), np.argmax(raw, axis=1)] = 1.0
        return G
