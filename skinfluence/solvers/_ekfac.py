"""EK-FAC: eigenvalue-corrected Kronecker-factored curvature of torch models.

George et al., "Fast Approximate Natural Gradient Descent in a Kronecker-
factored Eigenbasis", NeurIPS 2018; Grosse et al., "Studying Large Language
Model Generalization with Influence Functions", 2023.
"""

import numpy as np

from ._base import Solver


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
    """

    def __init__(self, *, damping=0.0, batch_size=256):
        super().__init__(damping=damping)
        self.batch_size = batch_size

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

    def _passes(self, adapter, layers, Q=None):
        """Accumulate (A, S) (``Q`` None) or the corrected eigenvalues."""
        import torch

        store = {}

        def hook(layer_index):
            def f(mod, inputs, output):
                store[layer_index] = (inputs[0], output)
            return f

        handles = [lay["module"].register_forward_hook(hook(i))
                   for i, lay in enumerate(layers)]
        theta = adapter.theta_t.detach().clone().requires_grad_(True)
        acc = [None] * len(layers)
        try:
            n = adapter.n_train
            for start in range(0, n, self.batch_size):
                rows = slice(start, min(start + self.batch_size, n))
                x, t = adapter.X[rows], adapter.y[rows]
                store.clear()
                out = adapter._output(theta, x)
                M = adapter.output_hessians(out, t)
                mu, U = torch.linalg.eigh(M)  # (b, K), (b, K, K)
                R = U * torch.sqrt(torch.clamp(mu, min=0))[:, None, :]
                outs = [store[i][1] for i in range(len(layers))]
                grads = [[] for _ in layers]
                for k in range(R.shape[2]):
                    gk = torch.autograd.grad(
                        out, outs, grad_outputs=R[:, :, k].reshape(out.shape),
                        retain_graph=True, allow_unused=True)
                    for i, g in enumerate(gk):
                        grads[i].append(torch.zeros_like(outs[i]) if g is None
                                        else g.detach())
                for i, lay in enumerate(layers):
                    a = store[i][0].detach()
                    g = torch.stack(grads[i])  # (K, b, out, ...)
                    if lay["type"] == "Conv2d":
                        part = self._conv_part(lay, a, g, None if Q is None
                                               else Q[i])
                    else:
                        part = self._linear_part(lay, a, g, None if Q is None
                                                 else Q[i])
                    acc[i] = part if acc[i] is None else tuple(
                        u + v for u, v in zip(acc[i], part))
        finally:
            for h in handles:
                h.remove()
        return acc

    @staticmethod
    def _linear_part(lay, a, g, Q):
        import torch

        if a.ndim != 2:
            raise ValueError(
                f"method='ekfac' needs 2-D inputs to Linear layer "
                f"{lay['name']!r}; got shape {tuple(a.shape)}."
            )
        if lay["bias"] is not None:
            a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
        if Q is None:
            return (a.T @ a, torch.einsum("kbo,kbp->op", g, g))
        QS, QA = Q
        # One position: Q_S' g a' Q_A is an outer product, squared factorwise.
        return (torch.einsum("kbo,kbi->oi", (g @ QS) ** 2,
                             ((a @ QA) ** 2).expand(g.shape[0], -1, -1)),)

    def _conv_part(self, lay, a, g, Q):
        import torch

        a = self._patches(lay, a)  # (b, D, L)
        if lay["bias"] is not None:
            a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
        g = g.reshape(g.shape[0], g.shape[1], g.shape[2], -1)  # (K, b, out, L)
        if g.shape[3] != a.shape[2]:
            raise ValueError(
                f"method='ekfac': Conv2d layer {lay['name']!r} has "
                f"{g.shape[3]} output positions but {a.shape[2]} input patches."
            )
        if Q is None:
            return (torch.einsum("bdl,bel->de", a, a),
                    torch.einsum("kbol,kbpl->op", g, g))
        QS, QA = Q
        aT = a.transpose(1, 2)  # (b, L, D)
        lam = 0
        for gk in g:  # per direction: memory b * out * D
            G = QS.T @ torch.bmm(gk, aT) @ QA  # (b, out, D), rotated
            lam = lam + (G ** 2).sum(dim=0)
        return (lam,)

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
        import torch

        self.n_params_ = adapter.n_params
        self.lambda_n_ = adapter.lambda_n
        self.layers_ = self._layers(adapter)
        factors = self._passes(adapter, self.layers_)
        Q = []
        for A, S in factors:
            Q.append((torch.linalg.eigh(S)[1], torch.linalg.eigh(A)[1]))
        lams = self._passes(adapter, self.layers_, Q=Q)
        self.Q_ = [(QS.cpu().numpy(), QA.cpu().numpy()) for QS, QA in Q]
        self.eigenvalues_ = [lam[0].cpu().numpy() for lam in lams]
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
        B = np.asarray(B, dtype=np.float64)
        squeeze = B.ndim == 1
        B = B.reshape(B.shape[0], -1)
        X = np.zeros_like(B)
        shift = self.lambda_n_ + self.damping
        for lay, (QS, QA), lam in zip(self.layers_, self.Q_, self.eigenvalues_):
            idx = self._blocks(lay)
            V = np.moveaxis(B[idx], 2, 0)  # (k, out, in+1)
            R = QS.T @ V @ QA / (lam + shift)
            X[idx] = np.moveaxis(QS @ R @ QA.T, 0, 2)
        return X[:, 0] if squeeze else X
