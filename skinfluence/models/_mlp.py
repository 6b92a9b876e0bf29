"""scikit-learn's MLPClassifier and MLPRegressor, rebuilt as torch modules.

A fitted multilayer perceptron is rebuilt as a ``torch.nn.Sequential`` of
``Linear`` layers with its hidden activation between them (``Identity``,
``Sigmoid``, ``Tanh`` or ``ReLU``), its ``coefs_`` and ``intercepts_``
copied in float64, and wrapped in :class:`~skinfluence.torch.TorchModel`
with scikit-learn's own training objective, so that the torch engine takes
influence at scikit-learn's fitted weights. The replica's output is the
last layer's pre-activation: the logits of a classifier (one for two
classes), the prediction of a regressor. Layer ``i`` (from 0) is module
``2 i`` of the Sequential, so its parameters are ``"{2i}.weight"`` (the
transpose of ``coefs_[i]``) and ``"{2i}.bias"`` (``intercepts_[i]``).

scikit-learn minimises, in ``_backprop`` (with ``sw`` the sample weights,
all ones by default)::

    (sum_j sw_j l_j + alpha / 2 * sum_i ||coefs_[i]||^2) / sum_j sw_j,

intercepts unpenalised, whose sum form is ``sum_j sw_j l_j + alpha / 2
||W||^2``: leaving a row out (or re-weighting it) changes the first sum
only, exactly as a refit without it does. Per row, ``l_j`` is

- MLPClassifier, two classes: the logistic loss of the one logit toward
  ``classes_[1]``; more classes: the softmax cross-entropy (unclipped: the
  gradient scikit-learn follows, ``p - y``, is that of the unclipped loss;
  it clips only the value it reports);
- MLPRegressor (``loss="squared_error"``): ``1/2 sum_k (y_jk - p_jk)^2``,
  summed over the outputs. That is the objective of the gradient
  scikit-learn computes; the loss *value* it reports averages over the
  outputs instead (scikit-learn issue #8349), which for more than one
  output no longer matches that gradient (its L-BFGS may then stop early:
  building such a replica warns).

TorchModel's built-in losses are in user units (the full squared error
``sum_k (y - p)^2``; the log-loss), so the regressor's objective is stated
doubled, ``sum_j sw_j (2 l_j) + (2 alpha) / 2 ||W||^2``: the same minimiser,
and the same parameter shifts ``H^-1 grad l_j``. The weight decay is a
per-parameter one, ``alpha / n_train`` (``2 alpha / n_train``) on every
weight matrix and 0 on every bias, in TorchModel's mean form.

Influence is taken at scikit-learn's fitted weights, in float64 whatever
dtype the MLP was trained in. Those weights are a minimum of the objective
only as far as the solver got there: "adam" and "sgd" stop short of one,
"lbfgs" within its tolerance (a relative gradient of about 1e-5 at best:
it stops on the relative decrease of the loss, 2.2e-9, which scikit-learn
does not expose). InfluenceEstimator measures the distance
(``stationarity_``) and warns when it exceeds a typical row's influence.
The parameters have exact symmetries the objective cannot see (the softmax
output biases shifted together, for one; :func:`mlp_null_space`), so
influence is taken on the identifiable subspace, as for a GLM's softmax
intercepts.

torch is imported only when a replica is built.
"""

import warnings

import numpy as np

#: The estimators this module rebuilds.
MLP_NAMES = ("MLPClassifier", "MLPRegressor")

_ACTIVATIONS = {"identity": "Identity", "logistic": "Sigmoid", "tanh": "Tanh",
                "relu": "ReLU"}


def is_mlp(estimator):
    """Whether ``estimator`` is scikit-learn's MLPClassifier or MLPRegressor."""
    cls = type(estimator)
    return cls.__name__ in MLP_NAMES and cls.__module__.startswith(
        "sklearn.neural_network")


def import_torch_for(estimator):
    """torch, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"{type(estimator).__name__} is taken through skinfluence's torch "
            "path (a torch replica of the fitted network), which needs "
            "PyTorch; install it with `pip install skinfluence[torch]`."
        ) from exc
    return torch


def check_mlp(mlp, y=None):
    """Refuse an MLP whose fit is not the minimum of one objective on all rows.

    Called before fitting (``y`` the targets it will be fitted on) and on a
    fitted one. Raises ValueError for: ``early_stopping=True`` with a
    stochastic solver (it trains on a random part of X only),
    ``loss="poisson"``, and multilabel classification.
    """
    name = type(mlp).__name__
    if mlp.early_stopping and mlp.solver in ("sgd", "adam"):
        raise ValueError(
            f"{name}(early_stopping=True) holds out validation_fraction="
            f"{mlp.validation_fraction} of the rows, at random, and trains on "
            "the rest only; influence takes all of X as training data. Set "
            "early_stopping=False (or use solver='lbfgs')."
        )
    if getattr(mlp, "loss", "squared_error") not in ("squared_error", "log_loss"):
        raise ValueError(
            f"{name}(loss={mlp.loss!r}) is not supported; use "
            "loss='squared_error' (or, for counts, PoissonRegressor)."
        )
    multilabel = False
    if hasattr(mlp, "coefs_") and name == "MLPClassifier":
        multilabel = mlp.out_activation_ == "logistic" and mlp.n_outputs_ > 1
    elif y is not None and name == "MLPClassifier":
        from sklearn.utils.multiclass import type_of_target

        multilabel = type_of_target(y) == "multilabel-indicator"
    if multilabel:
        raise ValueError(
            "MLPClassifier fitted on multilabel targets (an indicator matrix) "
            "is not supported; fit one MLPClassifier per label, or pass a "
            "TorchModel with a per-row loss summed over labels."
        )


def mlp_theta(mlp):
    """The fitted parameters in the replica's order, flat, float64.

    For each layer its weight (``coefs_[i].T``, row-major) then its bias,
    as ``named_parameters()`` of :func:`mlp_module` lists them.
    """
    parts = []
    for W, b in zip(mlp.coefs_, mlp.intercepts_):
        parts += [np.asarray(W, dtype=np.float64).T.ravel(),
                  np.asarray(b, dtype=np.float64).ravel()]
    return np.concatenate(parts)


def mlp_null_space(mlp, theta=None, X=None):
    """Orthonormal basis of the directions the MLP's objective cannot see.

    The replica's parameters have exact continuous symmetries that neither
    the loss nor the penalty (on the weights only) sees, so its Hessian is
    singular along them at a minimum, and influence is taken on the
    identifiable subspace (as for the softmax intercepts of a GLM). At
    parameters ``theta`` (the replica's flat vector, default the MLP's), the
    tangents of

    - softmax (more than two classes): the same shift of every output bias;
      with ``alpha=0`` also the same shift of every class's weight from one
      hidden unit;
    - ``activation="identity"``, for each hidden layer ``l``: the shift of
      its bias, ``b_l + d`` with ``b_(l+1) - d W_(l+1)``, and its
      rotations, ``W_l Q, b_l Q, Q' W_(l+1)`` for orthogonal Q (which leave
      the penalty unchanged); with ``alpha=0`` every invertible Q;
    - ``activation="relu"`` with ``alpha=0``: the rescaling of a hidden
      unit, ``c`` times its incoming weights and bias, ``1/c`` times its
      outgoing weights;

    and, given the training rows X, the flat directions of ``relu`` units
    that no training row activates (a "dead" unit: its pre-activation is
    negative on every row, so small moves of its bias change no loss, and
    with ``alpha=0`` neither do its incoming and outgoing weights).

    Returns an (n_params, k) float64 array in the replica's parameter order
    (:func:`mlp_theta`), or None when there is no such direction.
    """
    theta = mlp_theta(mlp) if theta is None else np.asarray(theta, np.float64)
    coefs, intercepts, w_off, b_off = [], [], [], []
    start = 0
    for W in mlp.coefs_:
        n_in, n_out = W.shape
        w_off.append(start)
        coefs.append(theta[start:start + n_in * n_out].reshape(n_out, n_in).T)
        b_off.append(start + n_in * n_out)
        intercepts.append(theta[b_off[-1]:b_off[-1] + n_out])
        start = b_off[-1] + n_out

    def weight(layer, i, k):
        """Flat indices of entries (i, k) of ``coefs_[layer]`` (in, out)."""
        return w_off[layer] + np.asarray(k) * coefs[layer].shape[0] + np.asarray(i)

    cols = []
    last = len(coefs) - 1
    n_in, K = coefs[last].shape
    if type(mlp).__name__ == "MLPClassifier" and K > 2:
        v = np.zeros(start)
        v[b_off[last]:b_off[last] + K] = 1.0
        cols.append(v)
        for i in range(n_in if mlp.alpha == 0 else 0):
            v = np.zeros(start)
            v[weight(last, i, np.arange(K))] = 1.0
            cols.append(v)
    for layer in range(last):
        W, b, W_next = coefs[layer], intercepts[layer], coefs[layer + 1]
        h, n_next = W_next.shape
        rows, outs = np.arange(W.shape[0]), np.arange(n_next)
        if mlp.activation == "identity":
            for i in range(h):
                v = np.zeros(start)
                v[b_off[layer] + i] = 1.0
                v[b_off[layer + 1]:b_off[layer + 1] + n_next] = -W_next[i]
                cols.append(v)
            # d/dt of W e^(tE), b e^(tE), e^(-tE) W_next at t=0, E = e_i e_j'
            # (skew, E - E', only when the penalty is on).
            pairs = [(i, j) for i in range(h) for j in range(h)
                     if mlp.alpha == 0 or i < j]
            for i, j in pairs:
                v = np.zeros(start)
                v[weight(layer, rows, j)] += W[:, i]
                v[b_off[layer] + j] += b[i]
                v[weight(layer + 1, i, outs)] -= W_next[j]
                if mlp.alpha != 0:
                    v[weight(layer, rows, i)] -= W[:, j]
                    v[b_off[layer] + i] -= b[j]
                    v[weight(layer + 1, j, outs)] += W_next[i]
                cols.append(v)
        elif mlp.activation == "relu" and mlp.alpha == 0:
            for i in range(h):
                v = np.zeros(start)
                v[weight(layer, rows, i)] = W[:, i]
                v[b_off[layer] + i] = b[i]
                v[weight(layer + 1, i, outs)] = -W_next[i]
                cols.append(v)
    if mlp.activation == "relu" and X is not None and len(X):
        cols += _dead_units(mlp, np.asarray(X, dtype=np.float64), coefs,
                            intercepts, w_off, b_off, start)
    if not cols:
        return None
    U, d, _ = np.linalg.svd(np.column_stack(cols), full_matrices=False)
    keep = d > 1e-10 * max(d.max(), 1e-300)  # the span, once (a zero unit's
    return U[:, keep] if keep.any() else None  # rotation is no direction)


def _dead_units(mlp, X, coefs, intercepts, w_off, b_off, n_params):
    """Unit vectors of the parameters of relu units dead on every row of X."""
    cols, a = [], X
    for layer in range(len(coefs) - 1):
        z = a @ coefs[layer] + intercepts[layer]
        n_in, n_out = coefs[layer].shape
        for i in np.flatnonzero(z.max(axis=0) < 0):
            idx = [b_off[layer] + i]
            if mlp.alpha == 0:  # the weights in and out are free as well
                n_next = coefs[layer + 1].shape[1]
                idx += list(w_off[layer] + i * n_in + np.arange(n_in))
                idx += list(w_off[layer + 1] + np.arange(n_next) * n_out + i)
            for k in idx:
                v = np.zeros(n_params)
                v[k] = 1.0
                cols.append(v)
        a = np.maximum(z, 0.0)
    return cols


def mlp_module(mlp):
    """A float64 ``torch.nn.Sequential`` computing the MLP's raw output.

    ``Linear`` layers holding copies of ``coefs_[i].T`` and
    ``intercepts_[i]``, the hidden activation after each but the last;
    the output activation (logistic, softmax or identity) is left to the
    loss. In evaluation mode; it shares no memory with the MLP.
    """
    torch = import_torch_for(mlp)
    act = getattr(torch.nn, _ACTIVATIONS[mlp.activation])
    layers = []
    last = len(mlp.coefs_) - 1
    for i, (W, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        # skip_init: no random initialisation (the global RNG is left alone).
        lin = torch.nn.utils.skip_init(torch.nn.Linear, W.shape[0], W.shape[1],
                                       dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(np.asarray(W, dtype=np.float64).T))
            lin.bias.copy_(torch.as_tensor(np.asarray(b, dtype=np.float64)))
        layers += [lin, act() if i < last else torch.nn.Identity()]
    return torch.nn.Sequential(*layers[:-1]).eval()


def mlp_weight_decay(mlp, n_train):
    """TorchModel's per-parameter ``weight_decay`` for the MLP's objective.

    ``alpha / n_train`` on every weight matrix (``2 alpha / n_train`` for a
    regressor, whose loss is stated in full squared errors), none on the
    biases: ``n_train * weight_decay`` is the sum-form penalty, ``alpha``.
    """
    factor = 2.0 if type(mlp).__name__ == "MLPRegressor" else 1.0
    decay = factor * float(mlp.alpha) / n_train
    return {f"{2 * i}.weight": decay for i in range(len(mlp.coefs_))}


def mlp_torch_model(mlp, X, y, **kwargs):
    """The fitted TorchModel replica of a fitted MLP, for its training data.

    Parameters
    ----------
    mlp : MLPClassifier or MLPRegressor
        Fitted.
    X : ndarray of shape (n_train, n_features)
        The features the MLP was trained on (dense).
    y : array-like of shape (n_train,) or (n_train, n_outputs)
        Its targets.
    **kwargs
        Other TorchModel parameters (``params``, ``device``, ``dtype``,
        ``curvature``).

    Returns
    -------
    model : skinfluence.torch.TorchModel
        Fitted on (X, y); its ``n_train`` sets the weight decay.
    """
    from sklearn.utils.validation import check_is_fitted

    from ..torch import TorchModel

    check_is_fitted(mlp)
    check_mlp(mlp)
    classifier = type(mlp).__name__ == "MLPClassifier"
    if classifier and len(mlp.classes_) < 2:
        raise ValueError(
            f"MLPClassifier was fitted on one class ({mlp.classes_.tolist()}); "
            "influence needs at least two."
        )
    if not classifier and mlp.n_outputs_ > 1 and mlp.solver == "lbfgs":
        warnings.warn(
            f"This MLPRegressor has {mlp.n_outputs_} outputs and was fitted by "
            "lbfgs, which, for several outputs, line-searches on a loss that "
            "averages the squared errors over the outputs while stepping along "
            "the gradient of their sum (scikit-learn issue #8349): it often "
            "stops short of either minimum. Influence is taken on the "
            "objective of the gradient (the sum, as solver='adam' and 'sgd' "
            "minimise), at the fitted weights.",
            UserWarning, stacklevel=3)
    n_train = len(X)
    if not n_train:
        raise ValueError("Found array with 0 sample(s); influence needs rows.")
    kwargs.setdefault("dtype", "float64")
    model = TorchModel(
        mlp_module(mlp), loss="cross_entropy" if classifier else "mse",
        weight_decay=mlp_weight_decay(mlp, n_train),
        classes=mlp.classes_ if classifier else None, **kwargs)
    model.fit(X, y)
    # Where it came from: InfluenceEstimator and loo_influence read the
    # MLP's symmetries (and InfluenceEstimator its stationarity) off it.
    model._mlp = mlp
    return model
