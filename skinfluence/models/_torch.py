"""Derivatives of a trained torch module's training objective, by torch.func.

The objective, in sum form like every other family, is::

    J(theta) = sum_j s_j l_j(theta) + 1/2 theta' diag(lambda_n) theta,
    lambda_n = n_train * weight_decay,

since ``weight_decay`` is stated as ``torch.optim`` states it, on the mean
loss (``mean_j l_j + weight_decay / 2 ||theta||^2`` is J / n_train). theta
is the flat vector of the selected parameters (``TorchModel.params``), in
``named_parameters()`` order, each flattened row-major; the others and the
buffers are constants. ``lambda_n`` is one number when every selected
parameter has the same decay (the usual case, a float here), else one per
coordinate (a tensor, from a ``weight_decay`` dict: scikit-learn's MLPs
leave their biases unpenalised). The row weights ``s_j`` are 1 except for
the replicas of scikit-learn MLPs fitted with ``sample_weight``
(:mod:`skinfluence.models._mlp`). torch is imported here only.
"""

import copy
import functools
import itertools
import threading

import numpy as np
import torch
from torch.func import functional_call, grad, hessian, jvp, vjp, vmap

from ..solvers import HessianOperator

#: Rows per batch of Hessian products and per-row gradients (memory bound).
BATCH_SIZE = 1024
#: Most bytes of the batches' linearisations an adapter keeps for its Hessian
#: products (see ``TorchAdapter._linearisation``); a batch whose linearisation
#: does not fit in what is left is rebuilt at every product instead.
LINEARISATION_MAX_BYTES = 2**29
#: Most bytes of per-row gradients computed by one vectorised pass.
GRAD_PASS_BYTES = 2**26
#: Right-hand sides per Hessian product pass (intermediates grow with them).
PRODUCT_COLUMNS = 32


def _locked(method):
    """Run ``method`` holding its adapter's lock (see TorchAdapter, Notes)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return run


class TorchAdapter:
    """Per-row gradients and Hessian products of a fitted TorchModel.

    Parameters
    ----------
    model : skinfluence.torch.TorchModel
        Fitted wrapper.
    X, y : array-like
        Its training data.
    sample_weight : array-like of shape (n_train,), default=None
        The rows' weights ``s_j`` in the objective; None (or all ones): 1.
    batch_size : int, default=BATCH_SIZE
        Rows per batch: memory is bounded by it, not by n_train.

    Attributes
    ----------
    lambda_n : float or torch.Tensor of shape (n_params,)
        The sum-form penalty ``n_train * weight_decay``: a float when it is
        the same on every coordinate, else per coordinate, on the module's
        device.
    sw : torch.Tensor of shape (n_train,) or None
        The row weights, None when they are all 1.

    Notes
    -----
    ``torch.func.functional_call`` runs a module by swapping the given
    tensors into it for the duration of the call: two threads in it at once
    see each other's (functorch-wrapped) tensors, and one may leave the
    module holding them. So the adapter runs a private copy of the module,
    ``self.module``, never the user's (whose predictions and parameters,
    read by ``read_theta``, are left alone), and each entry point that runs
    that copy holds ``self._lock``, re-entrant since entry points call one
    another. The copy shares the user's parameter and buffer tensors (it
    costs no memory): every one of them is passed to functional_call anyway.
    """

    family = "torch"

    def __init__(self, model, X, y, *, sample_weight=None, batch_size=BATCH_SIZE):
        self.model = model
        user = model.module_
        # A copy of the module's structure, its tensors shared (the memo maps
        # each to itself): see Notes.
        shared = {id(t): t for t in itertools.chain(user.parameters(),
                                                    user.buffers())}
        self.module = copy.deepcopy(user, memo=shared).eval()
        self._lock = threading.RLock()
        self.batch_size = int(batch_size)
        self.dtype, self.device = model._param()
        named = dict(self.module.named_parameters())
        selected = list(named) if model.params is None else list(model.params)
        self.names = selected
        self.shapes = [tuple(named[n].shape) for n in selected]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.fixed = {n: p.detach() for n, p in named.items() if n not in selected}
        self.fixed.update({n: b.detach() for n, b in self.module.named_buffers()})
        self.n_params = int(sum(self.sizes))
        self.theta_t = self._flatten({n: named[n].detach() for n in selected})
        self.theta = self.theta_t.cpu().numpy().astype(np.float64)
        self.loss_fn = model._loss_fn()
        self.classes = getattr(model, "classes_", None)
        self.X = model._to_tensor(X)
        self.y = model._target_tensor(y)
        self.n_train = int(self.X.shape[0])
        if self.y.shape[0] != self.n_train:
            raise ValueError(
                f"X has {self.n_train} rows but y has {self.y.shape[0]}; they must "
                "match."
            )
        self.lambda_n = self._penalty(model.weight_decay)
        self.sw = None
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if sw.shape[0] != self.n_train:
                raise ValueError(
                    f"sample_weight has {sw.shape[0]} entries for {self.n_train} "
                    "rows; they must match.")
            if not np.all(sw == 1.0):
                self.sw = self._tensor(sw)
        self.curvature = getattr(model, "curvature", "hessian")
        self._train_grads = None
        self._linearisations = {}  # (start, stop) of a batch -> _Linearisation
        self._bytes_by_size = {}  # batch size -> bytes its linearisation keeps
        self._recompute = False  # True once linearising failed (see hvp)

    # Pickling drops the lock (not picklable), the cache of training
    # gradients (up to 256 MiB) and the linearisations (up to
    # LINEARISATION_MAX_BYTES, autograd graphs that do not pickle): all are
    # recomputed on demand.
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        state["_train_grads"] = None
        state["_linearisations"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._linearisations = {}
        self.__dict__.setdefault("_recompute", False)
        self.__dict__.setdefault("_bytes_by_size", {})
        self.__dict__.setdefault("sw", None)
        self._lock = threading.RLock()

    # ------------------------------------------------------------ params
    def _penalty(self, weight_decay):
        """``lambda_n``: a float if uniform over theta, else a tensor (n_params,)."""
        if not isinstance(weight_decay, dict):
            return float(self.n_train * weight_decay)
        decay = np.concatenate(
            [np.full(size, float(weight_decay.get(name, 0.0)))
             for name, size in zip(self.names, self.sizes)] or [np.zeros(1)])
        if np.all(decay == decay[0]):
            return float(self.n_train * decay[0])
        return self._tensor(self.n_train * decay)

    @property
    def uniform_decay(self):
        """Whether one decay ``lambda_n`` applies to every coordinate."""
        return not torch.is_tensor(self.lambda_n)

    def _w(self, rows):
        """The weights of training rows ``rows``, or None when all are 1."""
        return None if self.sw is None else self.sw[rows]

    def _flatten(self, params):
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def unflatten(self, theta):
        """Dict ``{name: tensor}`` of the selected parameters from flat theta."""
        parts = torch.split(theta, self.sizes)
        return {n: p.reshape(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def read_theta(self):
        """The user's module's current selected parameters, flat, in numpy."""
        named = dict(self.model.module_.named_parameters())
        return self._flatten({n: named[n].detach() for n in self.names}).cpu().numpy()

    def _tensor(self, a):
        return torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------ losses
    def _output(self, theta, x):
        # Swaps tensors into self.module: callers hold self._lock.
        return functional_call(self.module, {**self.fixed, **self.unflatten(theta)},
                               (x,))

    def _loss_one(self, theta, x, t):
        return self.loss_fn(self._output(theta, x[None]), t[None])[0]

    def _loss_sum(self, theta, x, t, w=None):
        rows = self.loss_fn(self._output(theta, x), t)
        return (rows if w is None else rows * w).sum()

    def _batches(self, n):
        return [slice(i, min(i + self.batch_size, n))
                for i in range(0, n, self.batch_size)]

    @_locked
    def loss_rows(self, X, y):
        """Per-row losses (n,) in numpy."""
        Xt, yt = self.model._to_tensor(X), self.model._target_tensor(y)
        with torch.no_grad():
            return np.concatenate([
                self.loss_fn(self._output(self.theta_t, Xt[b]), yt[b]).cpu().numpy()
                for b in self._batches(Xt.shape[0])]) if Xt.shape[0] else np.empty(0)

    @_locked
    def _grad_rows(self, f, Xt, yt):
        """Per-row gradients of ``f``, an (n, n_params) tensor of the module's
        dtype on its device, filled in place.

        Each vectorised pass computes at most ``GRAD_PASS_BYTES`` of them
        (and at most ``batch_size`` rows), copied straight into the output
        (no concatenation).
        """
        n = Xt.shape[0]
        G = torch.empty((n, self.n_params), dtype=self.dtype, device=self.device)
        if n == 0:
            return G
        per_row = vmap(grad(f), in_dims=(None, 0, 0))
        item = self.theta_t.element_size()
        step = max(1, min(self.batch_size, GRAD_PASS_BYTES // (item * self.n_params)))
        for start in range(0, n, step):
            b = slice(start, min(start + step, n))
            G[b].copy_(per_row(self.theta_t, Xt[b], yt[b]).detach())
        return G

    def train_grad_rows(self, rows):
        """Per-row gradients ``s_j grad l_j`` of training rows ``rows`` (a
        slice or indices), their weights inside: an (n_rows, n_params)
        tensor."""
        G = self._grad_rows(self._loss_one, self.X[rows], self.y[rows])
        if self.sw is not None:
            G.mul_(self.sw[rows][:, None])
        return G

    def user_grad_rows(self, X, y):
        """Per-row gradients of the loss, an (n_rows, n_params) tensor."""
        return self._grad_rows(self._loss_one, self.model._to_tensor(X),
                               self.model._target_tensor(y))

    def _measurement(self, theta, x, k):
        out = self._output(theta, x[None])[0].reshape(-1)
        if self.classes is None:
            return out.sum()
        if out.shape[0] == 1:  # binary logit: signed toward the predicted class
            return torch.where(out[0] >= 0, out[0], -out[0])
        return out.gather(0, k.reshape(1))[0]

    @_locked
    def output_grad_rows(self, X):
        """Per-row gradients of the measured output, an (n_rows, n_params) tensor.

        The logit of the predicted class for classifiers (for one logit, the
        margin toward the predicted class), the output (summed over outputs)
        for regression.
        """
        Xt = self.model._to_tensor(X)
        with torch.no_grad():
            out = torch.cat([self._output(self.theta_t, Xt[b])
                             for b in self._batches(Xt.shape[0])]) if len(Xt) else None
        n = Xt.shape[0]
        if out is not None and self.classes is not None and out.reshape(n, -1).shape[
                1] > 1:
            k = out.reshape(n, -1).argmax(dim=1)
        else:
            k = torch.zeros(n, dtype=torch.int64, device=self.device)
        return self._grad_rows(self._measurement, Xt, k)

    def train_grad_chunks(self, max_bytes=2**28):
        """Yield ``(slice, G)``: per-row training gradients by chunks of rows,
        tensors on the module's device.

        Cached when all of them fit in ``max_bytes`` (shared by every
        caller, who must not write to it), else recomputed.
        """
        item = self.theta_t.element_size()
        with self._lock:  # computed once, by whichever thread comes first
            if (self._train_grads is None
                    and item * self.n_train * self.n_params <= max_bytes):
                self._train_grads = self.train_grad_rows(slice(0, self.n_train))
            G = self._train_grads
        if G is not None:
            yield slice(0, self.n_train), G
            return
        step = max(1, max_bytes // (item * self.n_params))
        for start in range(0, self.n_train, step):
            b = slice(start, min(start + step, self.n_train))
            yield b, self.train_grad_rows(b)

    @_locked
    def loss_directional(self, V, rows):
        """``V @ G[rows].T`` without the per-row gradients G, by forward mode.

        Row j's column is the directional derivative of its loss (times its
        weight ``s_j``) along each
        row v of V (shape (k, n_params)): one Jacobian-vector product of the
        rows' losses per direction (``vmap`` over ``PRODUCT_COLUMNS`` of
        them at a time), instead of a backward pass per row and an
        (n_rows, n_params) matrix. Returns a (k, n_rows) tensor.
        """
        Vt = V.to(self.dtype)
        x, t = self.X[rows], self.y[rows]

        def losses(theta):
            return self.loss_fn(self._output(theta, x), t)

        def along(v):
            return jvp(losses, (self.theta_t,), (v,))[1]

        out = torch.empty((Vt.shape[0], x.shape[0]), dtype=self.dtype,
                          device=self.device)
        for c in range(0, Vt.shape[0], PRODUCT_COLUMNS):
            out[c:c + PRODUCT_COLUMNS] = vmap(along)(Vt[c:c + PRODUCT_COLUMNS])
        if self.sw is not None:
            out.mul_(self.sw[rows][None, :])
        return out.detach()

    @_locked
    def objective_gradient(self):
        """Gradient of J at theta-hat, (n_params,) in numpy."""
        g = torch.zeros_like(self.theta_t)
        for b in self._batches(self.n_train):
            g += grad(self._loss_sum)(self.theta_t, self.X[b], self.y[b],
                                      self._w(b))
        g += self.lambda_n * self.theta_t
        return g.cpu().numpy()

    # ------------------------------------------------------------ Hessian
    def _hvp_batch(self, V, rows):
        """``sum_{j in rows} H_j V`` for V (k, n_params), forward-over-reverse.

        Recomputed from scratch at each call: the fallback of
        ``_linearisation`` (see hvp).
        """
        x, t, w = self.X[rows], self.y[rows], self._w(rows)
        g = grad(self._loss_sum)

        def hvp(v):
            return jvp(lambda th: g(th, x, t, w), (self.theta_t,), (v,))[1]

        try:
            return vmap(hvp)(V)
        except RuntimeError:  # an op without a batching rule for jvp
            return torch.stack([hvp(v) for v in V])

    @_locked
    def output_hessians(self, out, t):
        """``M_j``: Hessian of each row's loss in the flat output, (b, K, K)."""
        shape = out.shape[1:]
        loss_fn = self.loss_fn

        def row_loss(o, ti):
            return loss_fn(o.reshape(1, *shape), ti[None])[0]

        M = vmap(hessian(row_loss))(out.detach().reshape(out.shape[0], -1), t)
        return (M + M.transpose(1, 2)) / 2

    def _ggn_batch(self, V, rows):
        """``sum_{j in rows} J_j' M_j J_j V`` for V (k, n_params).

        The Gauss-Newton part of the Hessian: the network linearised at
        theta-hat (``J_j`` the Jacobian of row j's output), the loss kept
        exactly. Forward mode gives ``J_j v``, reverse mode ``J_j' u``.
        Recomputed from scratch at each call: the fallback of
        ``_linearisation`` (see hvp).
        """
        x, t = self.X[rows], self.y[rows]

        def f(th):
            return self._output(th, x)

        out, pull = vjp(f, self.theta_t)
        M = self._weighted(self.output_hessians(out, t), rows)
        Jv = vmap(lambda v: jvp(f, (self.theta_t,), (v,))[1])(V)  # (k, b, ...)
        k, b = Jv.shape[0], Jv.shape[1]
        MJv = torch.einsum("bij,cbj->cbi", M, Jv.reshape(k, b, -1))
        return vmap(lambda u: pull(u)[0])(MJv.reshape(Jv.shape))

    def _weighted(self, M, rows):
        """Output Hessians ``M`` (b, K, K) of rows ``rows`` times their weights."""
        w = self._w(rows)
        return M if w is None else M * w[:, None, None]

    def _linearise(self, rows, count=True):
        """The curvature of rows ``rows`` at theta-hat, as a _Linearisation.

        With ``count``, its ``nbytes`` is measured (see ``_graph_bytes``);
        otherwise (a batch used once) it is 0.
        """
        x, t = self.X[rows], self.y[rows]
        with torch.enable_grad():
            if self.curvature == "ggn":
                out, pull = vjp(lambda th: self._output(th, x), self.theta_t)
                # J' u is linear in u: its pullback gives J v (double backward).
                _, push = vjp(lambda u: pull(u)[0], torch.zeros_like(out))
            else:
                loss_grad = grad(self._loss_sum)
                w = self._w(rows)
                _, pull = vjp(lambda th: loss_grad(th, x, t, w), self.theta_t)
        nbytes = self._graph_bytes(rows) if count else 0
        if self.curvature != "ggn":
            return _Linearisation(nbytes, pull)
        M = self._weighted(self.output_hessians(out, t), rows)
        return _Linearisation(nbytes + M.nbytes + out.nbytes, pull, push=push, M=M)

    def _graph_bytes(self, rows):
        """Bytes a linearisation of ``rows`` keeps alive, measured once per
        batch size.

        torch.func's transforms refuse autograd's saved-tensor hooks, so the
        same computation is recorded once by plain autograd under them
        (``_SavedBytes``) and its count reused for every batch of that size.
        """
        n = len(range(*rows.indices(self.n_train))) if isinstance(rows, slice) else (
            len(rows))
        if n not in self._bytes_by_size:
            x, t = self.X[rows], self.y[rows]
            th = self.theta_t.detach().requires_grad_(True)
            saved = _SavedBytes(th, self.X)
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(
                    saved.pack, _unpack):
                if self.curvature == "ggn":
                    out = self._output(th, x)
                    u0 = torch.zeros_like(out, requires_grad=True)
                    torch.autograd.grad(out, th, u0, create_graph=True)
                else:
                    torch.autograd.grad(self._loss_sum(th, x, t, self._w(rows)), th,
                                        create_graph=True)
            self._bytes_by_size[n] = saved.nbytes
        return self._bytes_by_size[n]

    def _linearisation(self, rows, cache=True):
        """Batch ``rows``'s _Linearisation: built on first use, then kept.

        Kept (with ``cache``) while all those kept fit in
        ``LINEARISATION_MAX_BYTES``; one that does not is used once and
        dropped, so that products beyond the budget cost what they did
        without the cache. Callers hold ``self._lock``.
        """
        key = (rows.start, rows.stop) if cache else None
        lin = self._linearisations.get(key) if cache else None
        if lin is None:
            lin = self._linearise(rows, count=cache)
            used = sum(kept.nbytes for kept in self._linearisations.values())
            if cache and used + lin.nbytes <= LINEARISATION_MAX_BYTES:
                self._linearisations[key] = lin
        return lin

    def _accumulate(self, out, Vt, rows, cache):
        """``out += sum_{j in rows} H_j Vt`` for Vt (k, n_params), by passes of
        ``PRODUCT_COLUMNS`` columns on one linearisation of the rows."""
        passes = [slice(c, c + PRODUCT_COLUMNS)
                  for c in range(0, Vt.shape[0], PRODUCT_COLUMNS)]
        if not self._recompute:
            try:
                lin = self._linearisation(rows, cache)
                parts = [lin.product(Vt[c].contiguous()) for c in passes]
            except (RuntimeError, NotImplementedError):
                # An operation without a double backward (or a batching rule
                # for it): forward mode, recomputed at every product, instead.
                self._recompute = True
                self._linearisations.clear()
            else:
                for c, part in zip(passes, parts):
                    out[c] += part
                return
        fallback = self._ggn_batch if self.curvature == "ggn" else self._hvp_batch
        for c in passes:
            out[c] += fallback(Vt[c].contiguous(), rows).detach()

    @_locked
    def hvp(self, V, rows=None, scale=1.0):
        """``(scale * sum_j s_j H_j + diag(lambda_n)) V`` for V (n_params, k).

        ``H_j`` is row j's Hessian, or its Gauss-Newton part when the model's
        ``curvature`` is "ggn". Over all rows (``rows`` None), each batch's
        curvature is linearised once, at its first product, and kept while
        ``LINEARISATION_MAX_BYTES`` allows (see ``_Linearisation``); the
        mini-batches of ``rows`` (LiSSA's samples) are linearised for the
        one product. Computed in the module's dtype on its device: a tensor
        V gives a tensor; a NumPy V (a convenience for tests) float64 NumPy.
        """
        if not torch.is_tensor(V):
            return np.asarray(self.hvp(self._tensor(V), rows, scale).cpu().numpy(),
                              dtype=np.float64)
        Vt = V.to(self.dtype).T  # (k, n_params)
        out = torch.zeros(Vt.shape, dtype=self.dtype, device=self.device)
        batches = ([(b, True) for b in self._batches(self.n_train)]
                   if rows is None else [(rows, False)])
        for b, cache in batches:
            self._accumulate(out, Vt, b, cache)
        if self.uniform_decay:
            out.mul_(scale).add_(Vt, alpha=self.lambda_n)
        else:
            out.mul_(scale).addcmul_(Vt, self.lambda_n)
        return out.T

    def hessian(self):
        """Dense Hessian (or Gauss-Newton matrix) of J (small n_params only), a
        tensor on the module's device."""
        H = self.hvp(torch.eye(self.n_params, dtype=self.dtype, device=self.device))
        return (H + H.T) / 2

    def hessian_operator(self):
        """Matrix-free Hessian of J on the module's tensors, with mini-batch
        products for LiSSA."""
        # Bound methods and partials, not closures: the operator pickles.
        return HessianOperator(self.n_params, self.hvp, sample=self._sample,
                               template=self.theta_t.new_empty(0))

    def _sample(self, rng, batch_size):
        """``matmat`` of the unbiased mini-batch estimate of H on random rows."""
        idx = np.sort(rng.choice(self.n_train, size=min(batch_size, self.n_train),
                                 replace=False))
        rows = torch.as_tensor(idx, device=self.device)
        return functools.partial(self.hvp, rows=rows, scale=self.n_train / len(idx))

    def null_space(self):
        return None


def _unpack(t):
    return t


def _storage(t):
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # no storage (sparse, ...)
        return None


class _SavedBytes:
    """Bytes autograd saves for backward, as a ``saved_tensors_hooks`` pack.

    Each storage is counted once, and those of ``held`` (theta-hat, the
    training data: held by the adapter anyway) not at all.
    """

    def __init__(self, *held):
        self.nbytes = 0
        self.seen = {_storage(t) for t in held}

    def pack(self, t):
        key = _storage(t)
        if key is None:
            self.nbytes += t.numel() * t.element_size()
        elif key not in self.seen:
            self.seen.add(key)
            self.nbytes += t.untyped_storage().nbytes()
        return t


class _Linearisation:
    """One batch's curvature products at theta-hat, from graphs built once.

    Hessian: the pullback ``pull`` of ``theta -> grad_theta sum_j l_j``
    (``torch.func.vjp`` of ``grad``), so that ``H v = pull(v)`` is a
    backward pass through the recorded gradient (reverse over reverse),
    with no new forward or gradient pass.

    Gauss-Newton: the pullback ``pull`` of the outputs ``f(theta)`` gives
    ``J' w``; the pullback ``push`` of ``u -> J' u`` (linear in u) gives
    ``J v`` (the "double backward" trick: no forward-mode pass); the
    output Hessians ``M`` are computed once.

    Each product then costs two (Gauss-Newton) or one (Hessian) backward
    passes, vectorised over the right-hand sides by ``vmap`` (measured on
    a digits MLP, 256 rows and 50 columns: 7.6 ms a Hessian product,
    against 11.3 ms for ``autograd.grad`` with ``is_grads_batched``).
    ``nbytes`` is what it keeps alive: the tensors autograd saved for these
    backward passes (see ``TorchAdapter._graph_bytes``), plus ``M`` and
    ``out``.
    """

    def __init__(self, nbytes, pull, push=None, M=None):
        self.nbytes, self.pull, self.push, self.M = int(nbytes), pull, push, M

    def product(self, V):
        """``sum_j H_j V`` (or ``J_j' M_j J_j V``) for V (k, n_params)."""
        if self.push is None:
            return vmap(self.pull)(V)[0]
        Jv = vmap(self.push)(V)[0]  # (k, b, ...)
        k, b = Jv.shape[0], Jv.shape[1]
        MJv = torch.einsum("bij,cbj->cbi", self.M, Jv.reshape(k, b, -1))
        return vmap(self.pull)(MJv.reshape(Jv.shape))[0]
