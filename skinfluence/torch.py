"""Influence functions for trained PyTorch modules.

:class:`TorchModel` wraps an already trained ``torch.nn.Module`` with its
training loss and weight decay, so that :class:`~skinfluence.InfluenceEstimator`
can take influence with respect to its parameters. scikit-learn's
MLPClassifier and MLPRegressor are taken the same way, through a float64
replica of the fitted network with scikit-learn's own objective
(:meth:`TorchModel.from_mlp`; InfluenceEstimator builds it itself). torch is
optional: this module imports it only when a TorchModel is used.
"""

import copy
import warnings

import numpy as np
from sklearn.base import BaseEstimator


def is_skorch_net(obj):
    """Whether ``obj`` is a skorch ``NeuralNet`` (without importing skorch)."""
    return any(c.__name__ == "NeuralNet" and c.__module__.startswith("skorch")
               for c in type(obj).__mro__)


class _SkorchLoss:
    """Per-row loss equal, on average, to a skorch net's criterion.

    skorch trains on ``criterion_(y_pred, y)`` with reduction "mean": the
    average over every element. Evaluated with reduction "none" and averaged
    over the non-batch dimensions, the mean of these rows is that loss.
    ``NeuralNetClassifier`` feeds ``NLLLoss`` the log of the module's
    probabilities (plus the float32 epsilon skorch adds), and
    ``BCEWithLogitsLoss`` takes float targets: both are reproduced here.
    """

    def __init__(self, criterion, log_proba=False, float_target=False, eps=0.0):
        self.criterion = copy.deepcopy(criterion)
        self.criterion.reduction = "none"
        self.log_proba, self.float_target, self.eps = log_proba, float_target, eps

    def __call__(self, output, target):
        torch = _import_torch()
        if self.log_proba:
            output = torch.log(output + self.eps)
        if self.float_target:
            target = target.to(output.dtype).reshape(output.shape)
        elif target.is_floating_point():
            target = target.reshape(output.shape)
        rows = self.criterion(output, target)
        return rows.reshape(rows.shape[0], -1).mean(dim=1)

    def __repr__(self):
        return f"skorch criterion {type(self.criterion).__name__}"


def _import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TorchModel needs PyTorch, which is not installed; install it with "
            "`pip install skinfluence[torch]`."
        ) from exc
    return torch


# The built-in losses are module-level functions, so that a fitted model pickles.
def _cross_entropy(out, t):
    """Softmax cross-entropy per row; for one logit, BCE with logits toward 1."""
    F = _import_torch().nn.functional
    if out.ndim == 2 and out.shape[1] == 1 or out.ndim == 1:
        z = out.reshape(-1)
        return F.binary_cross_entropy_with_logits(z, t.to(z.dtype), reduction="none")
    return F.cross_entropy(out, t, reduction="none")


def _mse(out, t):
    """Squared error per row, summed over outputs."""
    t = t.reshape(out.shape)
    return ((out - t) ** 2).reshape(out.shape[0], -1).sum(dim=1)


LOSSES = {"cross_entropy": _cross_entropy, "mse": _mse}


def _check_weight_decay(weight_decay, names):
    """A non-negative float, or a dict of them keyed by parameter names."""
    values = (weight_decay.values() if isinstance(weight_decay, dict)
              else [weight_decay])
    if not all(isinstance(v, (int, float, np.integer, np.floating))
               and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(
            "weight_decay must be a non-negative float, or a dict of them "
            f"keyed by parameter names; got {weight_decay!r}."
        )
    if isinstance(weight_decay, dict):
        unknown = [k for k in weight_decay if k not in names]
        if unknown:
            raise ValueError(
                f"weight_decay names {unknown}, which are not parameters of the "
                f"module; its parameters are {names}."
            )


def _resolve_dtype(torch, dtype):
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(
            f"dtype must be a floating torch dtype or its name ('float64', "
            f"'float32'); got {dtype!r}."
        )
    return resolved


class TorchModel(BaseEstimator):
    """A trained ``torch.nn.Module`` with the loss it was trained on.

    ``fit`` does **not** train: the module is taken as trained on the data
    passed to ``fit``, which only records the classes (classification
    losses) and the number of features. Influence is then taken with
    respect to the module's parameters (all of them, or those named in
    ``params``) through :class:`~skinfluence.InfluenceEstimator`.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network; its output is the logits (classification) or
        the prediction (regression). A module left in training mode is put
        in evaluation mode (with a warning when it has dropout or batch
        normalisation layers).
    loss : {"cross_entropy", "mse"} or callable, default="cross_entropy"
        Per-row training loss. "cross_entropy" is the softmax cross-entropy
        on K >= 2 outputs, or, for a module with a single output, the
        logistic loss of that logit (BCE with logits) toward
        ``classes_[1]``. "mse" is the squared error summed over outputs. A
        callable ``loss(output, target)`` must return per-row losses
        (reduction "none"); its target is the class index (int64 tensor)
        when ``classes`` is given, else ``y`` as a float tensor. A fitted
        estimator pickles with the loss: make it a module-level function
        (or a picklable object), not a lambda or a closure.
    weight_decay : float or dict, default=0.0
        The L2 penalty as ``torch.optim`` states it, on the *mean* loss:
        the objective is ``mean_j l_j + weight_decay / 2 ||theta||^2``. It
        applies to the parameters influence is taken on (``params``). A
        dict gives each parameter its own decay, by name (as in
        ``named_parameters()``), like an optimizer's parameter groups:
        ``mean_j l_j + sum_p weight_decay[p] / 2 ||theta_p||^2``, the
        parameters it does not name unpenalised (e.g. ``{"0.weight": 1e-3,
        "2.weight": 1e-3}`` leaves the biases free). A non-uniform decay
        rules out ``method="ekfac"``, which can add only one to its
        eigenvalues (EK-FAC as the preconditioner of cg is fine).
    params : list of str, default=None
        Names (as in ``module.named_parameters()``, e.g. ``"2.weight"``) of
        the parameters to take influence on; None means all of them. The
        others are held fixed.
    device : str or torch.device, default=None
        Where to compute; None keeps the module's device.
    dtype : str or torch.dtype, default="float64"
        Floating type of the computation. Per-row gradients, Hessian (or
        Gauss-Newton) products, the solvers' iterates and the contraction
        with training gradients all run in it, on ``device``: NumPy appears
        only at the public boundary, where scores leave as float64 arrays.
        None keeps the module's. The module is copied when it has to be
        converted. float32 halves memory and is supported: on a 64-16-10
        tanh MLP (300 digits, weight decay 1e-2), scores in float32 are
        within 2e-6 of float64's, relative to their largest
        (``max|S32 - S64| / max|S64|``: 9e-7 with ``method="direct"``,
        1.8e-6 with "cg" at ``tol=1e-6``), with Spearman correlations
        1.0000000 per test row. float32 products and solves are exact to
        about 1e-7 relative, so cg cannot reach ``tol`` much below 1e-6
        (it warns): use float64, the default, for tighter solves or for
        ill-conditioned curvature.
    classes : array-like, default=None
        Class labels, in the order of the module's outputs. Defaults to
        ``np.unique(y)`` at ``fit`` for classification losses.
    curvature : {"hessian", "ggn"}, default="hessian"
        The curvature H that influence inverts. "hessian" is the exact
        Hessian of the objective (Koh & Liang), which is indefinite away from
        a minimum. "ggn" is its generalised Gauss-Newton part
        ``sum_j J_j' M_j J_j + lambda_n I`` (``J_j`` the Jacobian of row j's
        output, ``M_j`` the Hessian of its loss in the output): positive
        definite for convex losses, the curvature of Grosse et al. (2023),
        and the one that ``method="ekfac"`` approximates, whatever this
        setting.

    Attributes
    ----------
    module_ : torch.nn.Module
        The module used, in evaluation mode, of ``dtype`` on ``device``.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classification losses only).
    n_features_in_ : int
        Number of features (columns of a 2-D X) seen during ``fit``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skinfluence.torch import TorchModel
    >>> X = np.random.default_rng(0).normal(size=(20, 3))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> net = torch.nn.Linear(3, 2)
    >>> model = TorchModel(net, weight_decay=1e-3).fit(X, y)
    >>> model.predict_proba(X).shape
    (20, 2)
    """

    def __init__(self, module, *, loss="cross_entropy", weight_decay=0.0,
                 params=None, device=None, dtype="float64", classes=None,
                 curvature="hessian"):
        self.module = module
        self.loss = loss
        self.weight_decay = weight_decay
        self.params = params
        self.device = device
        self.dtype = dtype
        self.classes = classes
        self.curvature = curvature

    @classmethod
    def from_skorch(cls, net, **kwargs):
        """A TorchModel for a fitted skorch ``NeuralNet``.

        The module, criterion and weight decay are read off the net:
        ``module_``; ``criterion_`` with reduction "mean" (NLLLoss on the log
        of the module's probabilities for ``NeuralNetClassifier``, as skorch
        computes it); and the ``weight_decay`` of ``optimizer_``, which torch
        optimizers apply as the gradient of ``weight_decay / 2 ||theta||^2``
        on the mean loss, this class's convention. Passing a skorch net to
        :class:`~skinfluence.InfluenceEstimator` does this itself; call it
        to restrict ``params`` or change ``dtype`` or ``device``.

        Parameters
        ----------
        net : skorch.NeuralNet
            A fitted NeuralNetClassifier, NeuralNetBinaryClassifier or
            NeuralNetRegressor (or another NeuralNet with a standard torch
            loss as criterion).
        **kwargs
            Other TorchModel parameters (``params``, ``device``, ``dtype``).

        Returns
        -------
        model : TorchModel
            Unfitted wrapper of ``net.module_``; ``fit(X, y)`` with the
            net's training data.

        Raises
        ------
        ValueError
            If the net is not initialized, its criterion does not use
            reduction "mean" or has class weights, or its optimizer's
            parameter groups disagree on weight decay.
        """
        torch = _import_torch()
        if not is_skorch_net(net):
            raise TypeError(
                f"net must be a skorch NeuralNet; got {type(net).__name__}.")
        if not getattr(net, "initialized_", False):
            raise ValueError("The skorch net is not initialized; fit it first.")
        criterion = net.criterion_
        if not isinstance(criterion, torch.nn.modules.loss._Loss):
            raise ValueError(
                f"The skorch net's criterion {type(criterion).__name__} is not a "
                "torch loss; wrap net.module_ in TorchModel with a per-row loss."
            )
        if getattr(criterion, "reduction", "mean") != "mean":
            raise ValueError(
                f"The skorch net's criterion has reduction={criterion.reduction!r};"
                " only 'mean' (skorch's default) is supported: with another, "
                "the weight decay's scale against the loss is not the one read "
                "here."
            )
        if getattr(criterion, "weight", None) is not None or getattr(
                criterion, "pos_weight", None) is not None:
            raise ValueError(
                "The skorch net's criterion has class weights, which make its "
                "mean a weighted mean; wrap net.module_ in TorchModel with a "
                "per-row loss instead."
            )
        groups = net.optimizer_.param_groups
        decays = {float(g.get("weight_decay", 0.0)) for g in groups}
        if len(decays) > 1:
            raise ValueError(
                f"The skorch net's optimizer has parameter groups with different "
                f"weight_decay {sorted(decays)}; TorchModel takes one."
            )
        weight_decay = decays.pop() if decays else 0.0
        if weight_decay and isinstance(net.optimizer_, torch.optim.AdamW):
            warnings.warn(
                "AdamW decouples weight decay from the gradient: its fixed point "
                "is not a minimum of the loss plus an L2 penalty, so the "
                "penalty read as weight_decay is an approximation.",
                UserWarning, stacklevel=2)
        if getattr(net, "train_split", None) is not None:
            warnings.warn(
                "The skorch net holds out a validation split while training "
                "(train_split is set), so it was trained on part of X only; "
                "influence takes all of X as training data. Set train_split=None.",
                UserWarning, stacklevel=2)
        classes = getattr(net, "classes_", None)
        is_nll = isinstance(criterion, torch.nn.NLLLoss)
        is_bce = isinstance(criterion, torch.nn.BCEWithLogitsLoss)
        if is_bce and classes is None:
            classes = np.array([0, 1])
        dtype = next(iter(net.module_.parameters())).dtype
        loss = _SkorchLoss(criterion, log_proba=is_nll, float_target=is_bce,
                           eps=torch.finfo(dtype).eps)
        kwargs.setdefault("classes", classes)
        return cls(net.module_, loss=loss, weight_decay=weight_decay, **kwargs)

    @classmethod
    def from_mlp(cls, mlp, X, y, **kwargs):
        """The TorchModel replica of a fitted scikit-learn MLP.

        A ``torch.nn.Sequential`` of ``Linear`` layers holding float64
        copies of ``mlp.coefs_`` (transposed) and ``mlp.intercepts_``, the
        MLP's hidden activation (identity, logistic, tanh or relu) between
        them, and scikit-learn's own training objective: the mean over rows
        of the log-loss (one logit toward ``classes_[1]`` for two classes,
        the softmax cross-entropy for more; loss "cross_entropy") or of the
        squared error (loss "mse"), plus ``alpha / (2 n_train)`` times the
        squared weights, the biases unpenalised (a per-parameter
        ``weight_decay``; see :mod:`skinfluence.models._mlp` for the
        derivation). Passing an MLP (or a Pipeline ending in one) to
        :class:`~skinfluence.InfluenceEstimator` does this itself; call it
        for ``curvature="ggn"``, another ``device`` or to restrict
        ``params``.

        Influence is taken at the MLP's fitted weights. An MLP fitted by
        "adam" or "sgd" (or by "lbfgs" stopped early) need not be at a
        minimum of its objective; InfluenceEstimator measures how far it is
        and warns (``stationarity_``). Its scores are those of the float64
        replica, whatever dtype the MLP was trained in.

        Parameters
        ----------
        mlp : MLPClassifier or MLPRegressor
            A fitted MLP (not multilabel, ``loss="squared_error"`` for a
            regressor, no ``early_stopping`` with a stochastic solver).
        X : array-like of shape (n_train, n_features)
            The rows it was trained on (after any Pipeline steps).
        y : array-like of shape (n_train,) or (n_train, n_outputs)
            Their targets.
        **kwargs
            Other TorchModel parameters (``params``, ``device``,
            ``curvature``; ``dtype`` defaults to "float64").

        Returns
        -------
        model : TorchModel
            Fitted on (X, y): ``n_train`` fixes the mean-form weight decay,
            ``alpha / n_train`` (twice that for a regressor, whose loss is
            the full squared error).

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.neural_network import MLPClassifier
        >>> from skinfluence.torch import TorchModel
        >>> X, y = load_iris(return_X_y=True)
        >>> mlp = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs",
        ...                     max_iter=500, random_state=0).fit(X, y)
        >>> model = TorchModel.from_mlp(mlp, X, y)
        >>> bool(abs(model.predict_proba(X) - mlp.predict_proba(X)).max() < 1e-12)
        True
        """
        from .models._mlp import is_mlp, mlp_torch_model

        if not is_mlp(mlp):
            raise TypeError(
                "mlp must be scikit-learn's MLPClassifier or MLPRegressor; got "
                f"{type(mlp).__name__}.")
        X = np.asarray(X, dtype=np.float64) if not hasattr(X, "toarray") else (
            X.toarray().astype(np.float64))
        return mlp_torch_model(mlp, X, y, **kwargs)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Record classes and input size; the module itself is not trained.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            The data the module was trained on.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its targets.

        Returns
        -------
        self : object
            This wrapper, marked fitted.
        """
        torch = _import_torch()
        if not isinstance(self.module, torch.nn.Module):
            raise TypeError(
                f"module must be a torch.nn.Module; got {type(self.module).__name__}."
            )
        if not (callable(self.loss) or (isinstance(self.loss, str)
                                        and self.loss in LOSSES)):
            raise ValueError(
                f"loss must be one of {list(LOSSES)} or a callable "
                f"loss(output, target) returning per-row losses; got {self.loss!r}."
            )
        if self.curvature not in ("hessian", "ggn"):
            raise ValueError(
                f"curvature must be 'hessian' or 'ggn'; got {self.curvature!r}."
            )
        names = [n for n, _ in self.module.named_parameters()]
        _check_weight_decay(self.weight_decay, names)
        if self.params is not None:
            unknown = [p for p in self.params if p not in names]
            if unknown or not len(self.params):
                raise ValueError(
                    f"params {unknown or list(self.params)} name no parameter of the "
                    f"module; its parameters are {names}."
                )
        dtype = _resolve_dtype(torch, self.dtype)
        if self.module.training:
            kinds = (torch.nn.modules.dropout._DropoutNd,
                     torch.nn.modules.batchnorm._NormBase)
            stochastic = [type(m).__name__ for m in self.module.modules()
                          if isinstance(m, kinds)]
            if stochastic:
                warnings.warn(
                    f"The module was in training mode and has {sorted(set(stochastic))}"
                    " layers; it is put in evaluation mode (module.eval()), as "
                    "influence functions need a deterministic network.",
                    UserWarning,
                    stacklevel=2,
                )
            self.module.eval()
        module = self.module
        first = next(iter(module.parameters()), None)
        device = None if self.device is None else torch.device(self.device)
        needs_copy = first is not None and (
            (dtype is not None and first.dtype != dtype)
            or (device is not None and first.device != device))
        if needs_copy:
            module = copy.deepcopy(module).to(device=device, dtype=dtype)
        module.eval()
        self.module_ = module
        X = np.asarray(X)
        if X.ndim == 2:
            self.n_features_in_ = X.shape[1]
        if self._is_classifier():
            if self.classes is not None:
                self.classes_ = np.asarray(self.classes)
            elif y is not None:
                self.classes_ = np.unique(np.asarray(y))
            else:
                raise ValueError("A classification loss needs y (or classes).")
        return self

    def _is_classifier(self):
        if callable(self.loss):
            return self.classes is not None
        return self.loss == "cross_entropy"

    def __sklearn_is_fitted__(self):
        return hasattr(self, "module_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if self._is_classifier() else "regressor"
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------ internals
    def _param(self):
        first = next(iter(self.module_.parameters()), None)
        if first is None:
            torch = _import_torch()
            return torch.get_default_dtype(), torch.device("cpu")
        return first.dtype, first.device

    def _to_tensor(self, X):
        torch = _import_torch()
        dtype, device = self._param()
        if isinstance(X, torch.Tensor):
            return X.to(device=device, dtype=dtype)
        return torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=dtype,
                               device=device)

    def _target_tensor(self, y):
        """The loss's target for labels y (class indices or float values)."""
        torch = _import_torch()
        dtype, device = self._param()
        y = np.asarray(y)
        if self._is_classifier():
            idx = np.searchsorted(self.classes_, y)
            bad = (idx >= len(self.classes_)) | (
                self.classes_[np.minimum(idx, len(self.classes_) - 1)] != y)
            if np.any(bad):
                raise ValueError(
                    f"y has labels {np.unique(y[bad]).tolist()} not in classes_ "
                    f"{self.classes_.tolist()}."
                )
            return torch.as_tensor(idx, dtype=torch.int64, device=device)
        return torch.as_tensor(y.astype(np.float64), dtype=dtype, device=device)

    def _loss_fn(self):
        """Per-row loss ``f(output, target) -> (n,)`` in torch."""
        return self.loss if callable(self.loss) else LOSSES[self.loss]

    def _forward(self, X):
        torch = _import_torch()
        with torch.no_grad():
            return self.module_(self._to_tensor(X))

    # ----------------------------------------------------------- prediction
    def decision_function(self, X):
        """The module's output (logits) as a numpy array.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Raw outputs; a single output is flattened.
        """
        out = self._forward(X).detach().cpu().numpy()
        return out.reshape(-1) if out.ndim == 2 and out.shape[1] == 1 else out

    def predict_proba(self, X):
        """Class probabilities: softmax of the logits (sigmoid for one output).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Class probabilities in the order of ``classes_``.
        """
        if not self._is_classifier() or callable(self.loss):
            raise AttributeError("predict_proba needs loss='cross_entropy'.")
        torch = _import_torch()
        out = self._forward(X)
        if out.ndim == 1 or out.shape[1] == 1:
            p = torch.sigmoid(out.reshape(-1))
            return torch.stack([1 - p, p], dim=1).cpu().numpy()
        return torch.softmax(out, dim=1).cpu().numpy()

    def predict(self, X):
        """Predicted classes (argmax of the logits) or values.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Class labels for classification losses, else the output.
        """
        out = self.decision_function(X)
        if not self._is_classifier():
            return out
        if out.ndim == 1:
            return self.classes_[(out > 0).astype(int)]
        return self.classes_[np.argmax(out, axis=1)]


__all__ = ["TorchModel"]
