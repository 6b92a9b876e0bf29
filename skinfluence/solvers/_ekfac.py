"""EK-FAC: eigenvalue-corrected Kronecker-factored curvature of torch models.

George et al., "Fast Approximate Natural Gradient Descent in a Kronecker-
factored Eigenbasis", NeurIPS 2018; Grosse et al., "Studying Large Language
Model Generalization with Influence Functions", 2023.
"""

import numpy as np

from ..utils._array import is_torch, like, to_numpy
from ._base import Solver

#: Most bytes of the first pass's layer inputs and output gradients kept
#: for the second (eigenvalue) pass, which recomputes those beyond it.
CACHE_BYTES = 2**28


class EKFACSolver(Solver):
    """``(G + (lambda_n + damping) I)^-1`` with G the EK-FAC Gauss-Newton matrix.

    For every ``torch.nn.Linear`` layer with inputs ``a`` (a 1 appended when
    the layer has a bias) and pre-activations ``s``, the layer's block of the
    Gauss-Newton matrix ``sum_j J_j' M_j J_j`` (``M_j`` the Hessian of the
    row's loss with respect to the network output) is approximated in the
    eigenbasis ``Q_S (x) Q_A`` of the Kronecker factors
    ``A = sum_j a_j a_j'`` and ``S = sum_j sum_k g_jk g_jk'``, with the
    eigenvalues corrected to ``Lambda = sum_j sum_k (Q_S' g_jk a_j' Q_A)^2``
    (elementwise). Here ``g_jk`` is the pre-activation gradient back-propagated
    from the pseudo-gradient ``sqrt(mu_jk) u_jk`` of each eigenpair of
    ``M_j``: for the cross-entropy this is the exact expectation over labels
    drawn from the model's own predictive distribution (the true Fisher, which
    equals the Gauss-Newton matrix), neither sampled labels nor the true
    labels. Blocks of different layers are taken as independent (the matrix
    is block-diagonal over layers). Sums run over training rows, like the
    objective ``J``, so the curvature approximates the same ``H`` as the
    other solvers (up to the Gauss-Newton and Kronecker approximations), and
    the weight decay ``lambda_n`` is added exactly.

    A ``torch.nn.Conv2d`` layer is handled as in KFC (Grosse & Martens,
    "A Kronecker-factored approximate Fisher matrix for convolution layers",
    ICML 2016): its weight ``(C_out, C_in, kh, kw)`` is the matrix
    ``(C_out, C_in*kh*kw)`` (row-major, the column order of
    ``torch.nn.functional.unfold``), ``a_jt`` is the input patch at output
    position ``t`` (a 1 appended for the bias) and ``g_jkt`` the output
    gradient there; ``A = sum_jt a_jt a_jt'``, ``S = sum_jkt g_jkt g_jkt'``
    and the eigenvalues are corrected with the whole per-row gradient,
    ``Lambda = sum_jk (Q_S' G_jk Q_A)^2`` with ``G_jk = sum_t g_jkt a_jt'``,
    the diagonal of the layer's exact Gauss-Newton block in the Kronecker
    eigenbasis (as for Linear layers, where there is one position).

    It is the one solver that sees the model rather than an operator: its
    factors need the layers' inputs and output gradients, collected by
    forward hooks, so ``fit`` takes the torch adapter. Every parameter that
    influence is taken on must belong to a Linear layer whose input is
    (n_rows, in_features), or to a Conv2d layer with ``groups=1`` and
    ``padding_mode='zeros'`` whose input is (n_rows, C_in, H, W) (any
    stride, padding or dilation), weight and bias together; anything else
    raises a ValueError.

    Parameters
    ----------
    damping : float, default=0.0
        Added to every corrected eigenvalue.
    batch_size : int, default=256
        Training rows per forward/backward pass (memory is bounded by it; a
        Conv2d layer holds its unfolded input, ``batch_size * C_in*kh*kw *
        H_out*W_out`` numbers).
    expectation : {"exact", "mc"}, default="exact"
        "exact": the expectation over the output directions in closed form,
        every eigen-direction of ``M_j`` back-propagated (all of them in
        one vectorised backward pass per batch). "mc": one random
        combination ``R_j z_j`` per row (``M_j = R_j R_j'``, ``z_j``
        Rademacher), an unbiased estimate of ``S`` and of the corrected
        eigenvalues whose backward pass and factor products cost one
        direction instead of ``K``. Measured on bench_torch's digits MLP
        (64-32-10, 1500 rows), against ``direct`` on the exact Gauss-Newton
        matrix: the same agreement as "exact" to 0.005 (Pearson 0.690 vs
        0.690, top-20 Spearman 0.723 vs 0.724, mean of 5 seeds), corrected
        eigenvalues within 16% of the exact ones; on the wide MLP of
        bench_torch, fit 2x faster than "exact", eigenvalues within 8%,
        ``H^-1 g`` within 4%. Labels sampled from the model's predictive
        distribution (the usual one-pass Fisher) lose more there: Pearson
        0.658, Spearman 0.363.
    random_state : int, RandomState instance or None, default=None
        Seeds the draws of ``expectation="mc"``.

    Notes
    -----
    Each batch's forward pass and vectorised backward pass serve both
    passes: the layer inputs and output gradients of the first (factor)
    pass are kept for the second (eigenvalue) pass while they fit
    ``CACHE_BYTES``; batches beyond it are recomputed (the same draws).
    """

    def __init__(self, *, damping=0.0, batch_size=256, expectation="exact",
                 random_state=None):
        super().__init__(damping=damping)
        if expectation not in ("exact", "mc"):
            raise ValueError(
                f"expectation must be 'exact' or 'mc'; got {expectation!r}.")
        self.batch_size = batch_size
        self.expectation = expectation
        self.random_state = random_state

    # ------------------------------------------------------------ layout
    def _layers(self, adapter):
        import torch

        offsets, start = {}, 0
        for name, size, shape in zip(adapter.names, adapter.sizes, adapter.shapes):
            offsets[name] = (start, shape)
            start += size
        layers, claimed = [], set()
        for mname, mod in adapter.module.named_modules():
            if not isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                continue
            kind = "Conv2d" if isinstance(mod, torch.nn.Conv2d) else "Linear"
            prefix = f"{mname}." if mname else ""
            own = [prefix + "weight"] + ([prefix + "bias"] if mod.bias is not None
                                          else [])
            chosen = [n for n in own if n in offsets]
            if not chosen:
                continue
            if len(chosen) != len(own):
                raise ValueError(
                    f"method='ekfac' needs the weight and bias of {kind} layer "
                    f"{mname!r} together; params selects only {chosen}."
                )
            if isinstance(mod, torch.nn.Conv2d):
                if mod.groups != 1:
                    raise ValueError(
                        f"method='ekfac' supports Conv2d layers with groups=1 only; "
                        f"layer {mname!r} has groups={mod.groups}. Use method='cg'."
                    )
                if mod.padding_mode != "zeros":
                    raise ValueError(
                        f"method='ekfac' supports Conv2d layers with "
                        f"padding_mode='zeros' only; layer {mname!r} has "
                        f"padding_mode={mod.padding_mode!r}. Use method='cg'."
                    )
            w0, wshape = offsets[own[0]]
            claimed.update(own)
            layers.append({"name": mname, "module": mod, "type": kind,
                           # the weight as a matrix (out, in [* kh * kw])
                           "weight": (w0, (wshape[0], int(np.prod(wshape[1:])))),
                           "bias": offsets[own[1]] if len(own) == 2 else None})
        outside = [n for n in adapter.names if n not in claimed]
        if outside:
            raise ValueError(
                f"method='ekfac' supports torch.nn.Linear and torch.nn.Conv2d layers "
                f"only; parameters {outside} belong to other layers. Restrict "
                "TorchModel(params=...) to Linear and Conv2d layers, or use "
                "method='cg'."
            )
        return layers

    @staticmethod
    def _patches(lay, a):
        """Conv2d input (b, C_in, H, W) -> patches (b, C_in*kh*kw, L)."""
        import torch

        mod = lay["module"]
        if a.ndim != 4:
            raise ValueError(
                f"method='ekfac' needs 4-D (batched) inputs to Conv2d layer "
                f"{lay['name']!r}; got shape {tuple(a.shape)}."
            )
        padding = mod.padding
        if isinstance(padding, str):  # 'valid' or 'same' (stride 1)
            pads = []
            for k, d in zip(reversed(mod.kernel_size), reversed(mod.dilation)):
                total = 0 if padding == "valid" else d * (k - 1)
                pads += [total // 2, total - total // 2]
            a = torch.nn.functional.pad(a, pads)
            padding = 0
        return torch.nn.functional.unfold(a, mod.kernel_size, dilation=mod.dilation,
                                          padding=padding, stride=mod.stride)

    def _batch(self, adapter, layers, theta, store, rows, seed):
        """One batch's factor inputs: per layer ``(a, g)``.

        ``a`` is the layer's input (Linear: with the column of ones for the
        bias appended; Conv2d: as it came, unfolded later) and ``g`` the
        pre-activation gradients ``(K', b, out[, ...])`` back-propagated from
        the pseudo-gradients: the ``K'`` columns of ``M_j^(1/2)`` that carry
        curvature (``expectation='exact'``; a direction of ``M_j`` whose
        eigenvalue is zero in every row of the batch, such as the constant
        logit shift of the cross-entropy, contributes nothing and is
        dropped), or one random combination of them (``'mc'``). All the
        directions go through one vectorised backward pass.
        """
        import torch

        x, t = adapter.X[rows], adapter.y[rows]
        store.clear()
        with torch.enable_grad():
            out = adapter._output(theta, x)
        V = self._directions(adapter, out, t, seed).reshape(-1, *out.shape)
        outs = [store[i][1] for i in range(len(layers))]
        try:
            gs = torch.autograd.grad(out, outs, grad_outputs=V, allow_unused=True,
                                     is_grads_batched=True)
        except RuntimeError:  # an op without a batching rule for backward
            per = [torch.autograd.grad(out, outs, grad_outputs=v, allow_unused=True,
                                       retain_graph=True) for v in V]
            gs = [None if per[0][i] is None else torch.stack([p[i] for p in per])
                  for i in range(len(outs))]
        parts = []
        for i, lay in enumerate(layers):
            a = store[i][0].detach()
            g = (torch.zeros((V.shape[0], *outs[i].shape), dtype=outs[i].dtype,
                             device=outs[i].device) if gs[i] is None
                 else gs[i].detach())
            if lay["type"] == "Linear":
                if a.ndim != 2:
                    raise ValueError(
                        f"method='ekfac' needs 2-D inputs to Linear layer "
                        f"{lay['name']!r}; got shape {tuple(a.shape)}."
                    )
                if lay["bias"] is not None:
                    a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
            else:
                g = g.reshape(g.shape[0], g.shape[1], g.shape[2], -1)  # (K, b, out, L)
            parts.append((a, g))
        store.clear()
        return parts

    def _directions(self, adapter, out, t, seed):
        """Pseudo-gradients ``(K', b, K)`` at the output whose outer products
        sum (``'exact'``) or average (``'mc'``) to ``M_j``."""
        import torch

        M = adapter.output_hessians(out, t)
        mu, U = torch.linalg.eigh(M)  # (b, K) ascending, (b, K, K)
        mu = torch.clamp(mu, min=0)
        R = U * torch.sqrt(mu)[:, None, :]  # M_j = R_j R_j'
        if self.expectation == "mc":
            # R_j z_j, z_j Rademacher: E[(R_j z_j)(R_j z_j)'] = M_j, and
            # E[(c' z_j)^2] = |c|^2 makes the corrected eigenvalues unbiased.
            gen = torch.Generator(device=R.device).manual_seed(int(seed))
            z = torch.randint(0, 2, R.shape[::2], generator=gen, device=R.device)
            return (R @ (2 * z - 1).to(R.dtype)[:, :, None])[None, :, :, 0]
        keep = mu.amax(dim=0) > 1e-12 * mu.max()
        keep[-1] = True  # at least one direction (eigh sorts ascending)
        return R[:, :, keep].permute(2, 0, 1)

    def _conv_patches(self, lay, a, g):
        import torch

        a = self._patches(lay, a)  # (b, D, L)
        if lay["bias"] is not None:
            a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
        if g.shape[3] != a.shape[2]:
            raise ValueError(
                f"method='ekfac': Conv2d layer {lay['name']!r} has "
                f"{g.shape[3]} output positions but {a.shape[2]} input patches."
            )
        return a

    def _factor_part(self, lay, a, g):
        """This batch's ``(A, S)`` of one layer."""
        if lay["type"] == "Conv2d":
            a = self._conv_patches(lay, a, g)  # (b, D, L)
            a = a.transpose(1, 2).reshape(-1, a.shape[1])  # (b L, D)
            g = g.permute(0, 1, 3, 2)  # (K, b, L, out)
        g = g.reshape(-1, g.shape[-1])
        return a.T @ a, g.T @ g

    def _eigen_part(self, lay, a, g, QS, QA):
        """This batch's corrected eigenvalues of one layer."""
        import torch

        if lay["type"] == "Linear":
            # One position: Q_S' g a' Q_A is an outer product, squared
            # factorwise; the sum over directions k comes first.
            return ((g @ QS) ** 2).sum(dim=0).T @ (a @ QA) ** 2
        a = self._conv_patches(lay, a, g)
        aQ = a.transpose(1, 2) @ QA  # (b, L, D), rotated
        lam = 0
        for gk in g:  # per direction: memory b * out * D
            G = torch.bmm(QS.T @ gk, aQ)  # (b, out, D) = Q_S' G_jk Q_A
            lam = lam + (G ** 2).sum(dim=0)
        return lam

    def _passes(self, adapter, layers, Q=None):
        """Accumulate (A, S) (``Q`` None) or the corrected eigenvalues.

        Kept for the tests; ``fit`` calls ``_fit_passes``."""
        out = self._fit_passes(adapter, layers, factors_only=Q is None, Q=Q)
        return out if Q is None else [(lam,) for lam in out]

    def _fit_passes(self, adapter, layers, factors_only=False, Q=None):
        """Both passes of EK-FAC: the factors, their eigenvectors, the
        corrected eigenvalues. Returns ``[(A, S)]`` (``factors_only``), the
        corrected eigenvalues for given ``Q``, or ``(Q, eigenvalues)``.

        The second pass needs every batch's ``(a, g)`` again: they are kept
        from the first while they fit ``CACHE_BYTES``, recomputed otherwise
        (with the same random draws for ``expectation='mc'``).
        """
        import torch

        store = {}

        def hook(layer_index):
            def f(mod, inputs, output):
                store[layer_index] = (inputs[0], output)
            return f

        handles = [lay["module"].register_forward_hook(hook(i))
                   for i, lay in enumerate(layers)]
        theta = adapter.theta_t.detach().clone().requires_grad_(True)
        n = adapter.n_train
        batches = [slice(s, min(s + self.batch_size, n))
                   for s in range(0, n, self.batch_size)]
        seeds = np.random.default_rng(self.random_state).integers(
            2**62, size=len(batches))
        cache, cached_bytes = {}, 0
        try:
            with adapter._lock:  # the forward passes swap tensors into it
                if Q is None:
                    acc = [None] * len(layers)
                    for bi, rows in enumerate(batches):
                        parts = self._batch(adapter, layers, theta, store, rows,
                                            seeds[bi])
                        for i, (lay, (a, g)) in enumerate(zip(layers, parts)):
                            A, S = self._factor_part(lay, a, g)
                            acc[i] = (A, S) if acc[i] is None else (
                                acc[i][0] + A, acc[i][1] + S)
                        size = sum(a.numel() * a.element_size() + g.numel()
                                   * g.element_size() for a, g in parts)
                        if not factors_only and cached_bytes + size <= CACHE_BYTES:
                            cache[bi] = parts
                            cached_bytes += size
                        del parts
                    if factors_only:
                        return acc
                    Q = [(torch.linalg.eigh(S)[1], torch.linalg.eigh(A)[1])
                         for A, S in acc]
                    del acc
                    fresh = Q
                else:
                    fresh = None
                lams = [0] * len(layers)
                for bi, rows in enumerate(batches):
                    parts = cache.pop(bi, None)
                    if parts is None:
                        parts = self._batch(adapter, layers, theta, store, rows,
                                            seeds[bi])
                    for i, (lay, (a, g)) in enumerate(zip(layers, parts)):
                        lams[i] = lams[i] + self._eigen_part(lay, a, g, *Q[i])
                    del parts
        finally:
            for h in handles:
                h.remove()
        return lams if fresh is None else (Q, lams)

    # ------------------------------------------------------------ solver
    def fit(self, adapter, null_space=None):
        """Collect the factors and eigenvalues over the adapter's training rows.

        Parameters
        ----------
        adapter : skinfluence.models._torch.TorchAdapter
            The fitted model's adapter (this solver needs its layers).
        null_space : None
            Unused; torch objectives have no known null space.
        """
        self.n_params_ = adapter.n_params
        self.lambda_n_ = adapter.lambda_n
        self.layers_ = self._layers(adapter)
        Q, lams = self._fit_passes(adapter, self.layers_)
        # Kept as torch tensors on the module's device, in its dtype.
        self.Q_ = [(QS, QA) for QS, QA in Q]
        self.eigenvalues_ = list(lams)
        shift = self.lambda_n_ + self.damping
        top = max(float(e.max()) for e in self.eigenvalues_) + shift
        low = min(float(e.min()) for e in self.eigenvalues_) + shift
        if low <= 1e-12 * max(top, 1e-300):
            raise ValueError(
                f"The EK-FAC curvature is singular (smallest corrected eigenvalue "
                f"{low:.3g} with weight decay {self.lambda_n_:.3g} and damping "
                f"{self.damping:g}); set damping > 0, e.g. "
                f"damping={max(1e-6, 1e-3 * top):.1g}."
            )
        self.info_ = {
            "method": "ekfac", "n_params": self.n_params_, "damping": self.damping,
            "weight_decay_sum": self.lambda_n_,
            "layers": [
                {"name": lay["name"],
                 "type": lay["type"],
                 "shape": tuple(e.shape),
                 "bias": lay["bias"] is not None,
                 "eigenvalue_range": (float(e.min()), float(e.max()))}
                for lay, e in zip(self.layers_, self.eigenvalues_)],
        }
        return self

    def _blocks(self, lay):
        w0, (d_out, d_in) = lay["weight"]
        idx = np.arange(w0, w0 + d_out * d_in).reshape(d_out, d_in)
        if lay["bias"] is not None:
            b0 = lay["bias"][0]
            idx = np.hstack([idx, np.arange(b0, b0 + d_out)[:, None]])
        return idx

    def solve(self, B):
        """``(G_ekfac + lambda_n I + damping I)^-1 B`` for B (n_params, k).

        In torch, on the factors' device and dtype (a torch model's); B may
        be a tensor (returned as one) or a NumPy array (returned in float64).
        """
        import torch

        if not is_torch(B):
            return to_numpy(self.solve(like(B, self.eigenvalues_[0])))
        squeeze = B.ndim == 1
        Bt = B.reshape(B.shape[0], -1)
        Xt = torch.zeros_like(Bt)
        shift = self.lambda_n_ + self.damping
        k = Bt.shape[1]
        # Plain GEMMs on contiguous blocks, layer by layer (its threads are
        # the ones that ran fit).
        for lay, (QS, QA), lam in zip(self.layers_, self.Q_, self.eigenvalues_):
            d_out, d_in = lam.shape
            w0 = lay["weight"][0]
            V = Bt[w0:w0 + d_out * (d_in - (lay["bias"] is not None))].reshape(
                d_out, -1, k)
            if lay["bias"] is not None:
                b0 = lay["bias"][0]
                V = torch.cat([V, Bt[b0:b0 + d_out, None, :]], dim=1)
            V = (QS.T @ V.reshape(d_out, d_in * k)).reshape(d_out, d_in, k)
            R = V.transpose(1, 2).reshape(d_out * k, d_in) @ QA  # (out, k, in)
            R = R.reshape(d_out, k, d_in).div_((lam + shift)[:, None, :])
            V = (R.reshape(d_out * k, d_in) @ QA.T).reshape(d_out, k, d_in)
            V = (QS @ V.transpose(1, 2).reshape(d_out, d_in * k)).reshape(
                d_out, d_in, k)
            if lay["bias"] is not None:
                Xt[b0:b0 + d_out] = V[:, -1]
                V = V[:, :-1]
            Xt[w0:w0 + V.shape[0] * V.shape[1]] = V.reshape(-1, k)
        return Xt[:, 0] if squeeze else Xt
