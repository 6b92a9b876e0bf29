"""EK-FAC on Conv2d layers (KFC factors with the eigenvalue correction).

The corrected eigenvalues of a layer are, by construction, the diagonal of
the layer's exact Gauss-Newton block ``sum_j J_j' M_j J_j`` in the Kronecker
eigenbasis ``Q_S (x) Q_A``; that identity, the factors ``A`` and ``S`` and
the solve are checked against brute force, then the estimator end to end.
"""

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.datasets import load_digits

from skinfluence import InfluenceEstimator

torch = pytest.importorskip("torch")

from skinfluence.models._torch import TorchAdapter  # noqa: E402
from skinfluence.solvers._ekfac import EKFACSolver  # noqa: E402
from skinfluence.torch import TorchModel  # noqa: E402

CE = torch.nn.functional.cross_entropy




# Conv2d(1, 3, kernel) on 1x6x6 inputs -> Tanh -> Flatten -> Linear(., 4).
CONVS = {
    "pad1": dict(kernel_size=3, padding=1),
    "stride2": dict(kernel_size=3, stride=2),
    "dilation2": dict(kernel_size=(3, 2), dilation=2, padding=(2, 1), stride=(1, 2)),
    "same_even": dict(kernel_size=2, padding="same", bias=False),
}


def _case(kw, n=40, seed=0, batch_size=16):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    X = rng.normal(size=(n, 1, 6, 6))
    y = rng.integers(0, 4, n)
    conv = torch.nn.Conv2d(1, 3, **kw).double()
    n_out = conv(torch.zeros(1, 1, 6, 6, dtype=torch.float64)).numel()
    net = torch.nn.Sequential(conv, torch.nn.Tanh(), torch.nn.Flatten(),
                              torch.nn.Linear(n_out, 4)).double()
    model = TorchModel(net, weight_decay=1e-2, classes=[0, 1, 2, 3]).fit(X, y)
    adapter = TorchAdapter(model, X, y)
    solver = EKFACSolver(batch_size=batch_size).fit(adapter)
    return net, X, y, adapter, solver


def _layer_jacobians(net, X, mod):
    """Per-row Jacobians of the logits w.r.t. ``mod``'s (weight | bias)
    matrix, flattened row-major: (n, n_logits, out * (in [+1]))."""
    params = {n: p.detach() for n, p in net.named_parameters()}
    prefix = next(n for n, m in net.named_modules() if m is mod) + "."
    own = {n: p for n, p in params.items() if n.startswith(prefix)}

    def f(own_params, x):
        return torch.func.functional_call(net, {**params, **own_params},
                                          (x[None],))[0]

    x = torch.as_tensor(X)
    J = torch.func.vmap(torch.func.jacrev(f), in_dims=(None, 0))(own, x)
    W = J[prefix + "weight"]
    W = W.reshape(*W.shape[:3], -1)  # (n, K, out, in*kh*kw)
    if prefix + "bias" in J:
        W = torch.cat([W, J[prefix + "bias"][..., None]], dim=3)
    return W.reshape(*W.shape[:2], -1)


def _output_hessians(net, X, y):
    with torch.no_grad():
        out = net(torch.as_tensor(X))

    def loss(o, t):
        return CE(o[None], t[None], reduction="none")[0]

    return torch.func.vmap(torch.func.hessian(loss))(out, torch.as_tensor(y))


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("kw", CONVS.values(), ids=CONVS.keys())
def test_corrected_eigenvalues_are_ggn_diagonal_in_kfe(kw):
    net, X, y, adapter, solver = _case(kw)
    assert [lay["type"] for lay in solver.info_["layers"]] == ["Conv2d", "Linear"]
    M = _output_hessians(net, X, y)
    for lay, (QS, QA), lam in zip(solver.layers_, solver.Q_, solver.eigenvalues_):
        # The solver hooks the adapter's private copy of the network.
        J = _layer_jacobians(adapter.module, X, lay["module"])
        G = torch.einsum("nap,nab,nbq->pq", J, M, J).numpy()  # exact GGN block
        Q = np.kron(QS, QA)  # column o*D + d is vec(QS[:, o] QA[:, d]')
        expected = np.einsum("pi,pq,qi->i", Q, G, Q).reshape(lam.shape)
        np.testing.assert_allclose(lam, expected, rtol=1e-8,
                                   atol=1e-12 * expected.max())


def _patches_by_loop(X, conv):
    """Input patches (n, L, C_in*kh*kw) in weight-flattening order, by hand."""
    kh, kw = conv.kernel_size
    dh, dw = conv.dilation
    sh, sw = conv.stride
    if conv.padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        pads = ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
    else:
        pads = ((conv.padding[0],) * 2, (conv.padding[1],) * 2)
    Xp = np.pad(X, ((0, 0), (0, 0), *pads))
    H = (Xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    W = (Xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    P = [Xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh,
            j * sw:j * sw + dw * (kw - 1) + 1:dw].reshape(len(X), -1)
         for i in range(H) for j in range(W)]
    return np.stack(P, axis=1)


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("kw", CONVS.values(), ids=CONVS.keys())
def test_conv_factors_by_brute_force(kw):
    net, X, y, adapter, solver = _case(kw)
    conv = net[0]
    (A, S), _ = solver._passes(adapter, solver.layers_)
    # The hand-made patches reproduce the layer: the weight's row-major
    # flattening (C_in, kh, kw) is the patches' column order.
    P = _patches_by_loop(X, conv)
    with torch.no_grad():
        s = conv(torch.as_tensor(X)).reshape(len(X), 3, -1).numpy()
    Wm = conv.weight.detach().reshape(3, -1).numpy()
    b = 0 if conv.bias is None else conv.bias.detach().numpy()[:, None]
    np.testing.assert_allclose(np.einsum("od,nld->nol", Wm, P) + b, s, atol=1e-12)
    if conv.bias is not None:
        P = np.concatenate([P, np.ones_like(P[..., :1])], axis=2)
    np.testing.assert_allclose(A.numpy(), np.einsum("nld,nle->de", P, P),
                               rtol=1e-10, atol=1e-12)
    # S = sum_j sum_t Js_jt' M_j Js_jt, Js the logits' Jacobian w.r.t. the
    # conv output (independent of the eigen-decomposition of M_j).
    rest = net[1:]
    with torch.no_grad():
        s_t = conv(torch.as_tensor(X))
    Js = torch.func.vmap(torch.func.jacrev(lambda v: rest(v[None])[0]))(s_t)
    Js = Js.reshape(len(X), 4, 3, -1)  # (n, logits, C_out, L)
    M = _output_hessians(net, X, y)
    expected = torch.einsum("naol,nab,nbpl->op", Js, M, Js).detach().numpy()
    np.testing.assert_allclose(S.numpy(), expected, rtol=1e-10,
                               atol=1e-12 * np.abs(expected).max())


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("name", ["pad1", "same_even"])  # bias, no bias
def test_conv_solve_is_dense_inverse(name):
    net, X, y, adapter, solver = _case(CONVS[name], batch_size=7)
    rng = np.random.default_rng(1)
    B = rng.normal(size=(adapter.n_params, 3))
    shift = solver.lambda_n_ + 0.3
    solver.damping = 0.3
    X_ek = solver.solve(B)
    covered = 0
    for lay, (QS, QA), lam in zip(solver.layers_, solver.Q_, solver.eigenvalues_):
        idx = solver._blocks(lay).ravel()  # flat theta index of (o, d)
        Q = np.kron(QS, QA)
        dense = Q @ np.diag(1 / (lam.ravel() + shift)) @ Q.T
        np.testing.assert_allclose(X_ek[idx], dense @ B[idx], rtol=1e-10,
                                   atol=1e-14)
        covered += idx.size
    assert covered == adapter.n_params
    np.testing.assert_allclose(solver.solve(B[:, 0]), X_ek[:, 0], rtol=1e-12)
    # the conv weight's flat indices are the first C_out*C_in*kh*kw entries
    n_in = 9 if name == "pad1" else 4
    np.testing.assert_array_equal(solver._blocks(solver.layers_[0])[:, :n_in],
                                  np.arange(3 * n_in).reshape(3, n_in))


# ------------------------------------------------------------ end to end
N_TRAIN, WEIGHT_DECAY = 150, 5e-2


@pytest.fixture(scope="module")
def digits_cnn():
    """Conv2d(1, 6, 3, stride 2) - tanh - Linear(96, 10) on 8x8 digits,
    float64, at a minimum of the objective."""
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8)
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:N_TRAIN], order[N_TRAIN:N_TRAIN + 4]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, stride=2, padding=1),
                              torch.nn.Tanh(), torch.nn.Flatten(),
                              torch.nn.Linear(96, 10)).double()
    Xt, yt = torch.as_tensor(X[tr]), torch.as_tensor(y[tr])
    opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=3000,
                            tolerance_grad=1e-10, tolerance_change=0,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = CE(net(Xt), yt) + WEIGHT_DECAY / 2 * sum(
            (p**2).sum() for p in net.parameters())
        value.backward()
        return value

    opt.step(closure)
    model = TorchModel(net, weight_decay=WEIGHT_DECAY).fit(X[tr], y[tr])
    return model, X[tr], y[tr], X[te], y[te]


def test_conv_net_ekfac_end_to_end(digits_cnn):
    model, Xtr, ytr, Xte, yte = digits_cnn
    est = InfluenceEstimator(model, method="ekfac").fit(Xtr, ytr)
    ek = est.score_influence(Xte, yte)
    assert ek.shape == (len(Xte), N_TRAIN) and np.isfinite(ek).all()
    layers = est.solver_info_["layers"]
    assert [(lay["name"], lay["type"], lay["shape"], lay["bias"])
            for lay in layers] == [("0", "Conv2d", (6, 10), True),
                                   ("3", "Linear", (10, 97), True)]
    assert est.n_params_ == 6 * 10 + 10 * 97
    cg = InfluenceEstimator(model, method="cg", tol=1e-10).fit(
        Xtr, ytr).score_influence(Xte, yte)
    # Measured per test row over the 150 training rows (torch 2.13, CPU):
    # Pearson 0.86, 0.94, 0.81, 0.91 and Spearman 0.49, 0.62, 0.37, 0.50
    # (other initialisations reach minima with Pearson 0.84-0.94, Spearman
    # 0.33-0.69). As for the MLP, EK-FAC is a block-diagonal Gauss-Newton
    # approximation of the Hessian cg inverts: signs and magnitudes agree,
    # the ranking of the many small scores much less.
    for i in range(len(ek)):
        assert pearsonr(ek[i], cg[i])[0] >= 0.7
        assert spearmanr(ek[i], cg[i])[0] >= 0.2


# ------------------------------------------------------------ refusals
def _refused(net, X, match):
    y = np.arange(len(X)) % 3
    model = TorchModel(net.double(), weight_decay=1e-2, classes=[0, 1, 2]).fit(X, y)
    with pytest.raises(ValueError, match=match):
        InfluenceEstimator(model, method="ekfac").fit(X, y)


def test_conv_refusals():
    X = np.random.default_rng(0).normal(size=(6, 2, 5, 5))

    for conv, n_out, match in [
            (torch.nn.Conv2d(2, 4, 3, groups=2), 36, "groups=1 only.*groups=2"),
            (torch.nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), 50,
             "padding_mode='zeros' only.*'reflect'")]:
        _refused(torch.nn.Sequential(conv, torch.nn.Flatten(),
                                     torch.nn.Linear(n_out, 3)), X, match)
    conv1d = torch.nn.Sequential(torch.nn.Conv1d(2, 2, 3), torch.nn.Flatten(),
                                 torch.nn.Linear(6, 3))
    _refused(conv1d, X[:, :, 0], r"torch\.nn\.Linear and torch\.nn\.Conv2d layers "
             r"only; parameters \['0\.weight', '0\.bias'\]")


# ------------------------------------------------------------ passes
def _fit(adapter, **kw):
    return EKFACSolver(batch_size=16, **kw).fit(adapter)


def _grad_calls(monkeypatch, fail_batched=False):
    """Count torch.autograd.grad calls (optionally refusing batched ones)."""
    calls = []
    real = torch.autograd.grad

    def counted(*args, **kwargs):
        calls.append(kwargs.get("is_grads_batched", False))
        if fail_batched and kwargs.get("is_grads_batched"):
            raise RuntimeError("no batching rule (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counted)
    return calls


@pytest.mark.parametrize("expectation", ["exact", "mc"])
def test_one_backward_per_batch_cached_or_not(expectation, monkeypatch):
    """All output directions go through one vectorised backward pass per
    batch; the eigenvalue pass reuses the first pass's layer inputs and
    gradients (CACHE_BYTES) or recomputes them, with the same answer (the
    same draws for 'mc'); the loop fallback gives it too."""
    import skinfluence.solvers._ekfac as ekfac

    *_, adapter, _ = _case(CONVS["pad1"])  # 40 rows: 3 batches of 16
    ref = _fit(adapter, expectation=expectation, random_state=3)
    calls = _grad_calls(monkeypatch)
    cached = _fit(adapter, expectation=expectation, random_state=3)
    # (unbatched calls are the output Hessians' own, by torch.func)
    assert calls.count(True) == 3
    monkeypatch.setattr(ekfac, "CACHE_BYTES", 0)
    del calls[:]
    recomputed = _fit(adapter, expectation=expectation, random_state=3)
    assert calls.count(True) == 6
    monkeypatch.undo()
    calls = _grad_calls(monkeypatch, fail_batched=True)
    looped = _fit(adapter, expectation=expectation, random_state=3)
    assert calls.count(True) == 3
    for other in (cached, recomputed, looped):
        for (QS, QA), (QS0, QA0) in zip(other.Q_, ref.Q_):
            np.testing.assert_array_equal(QS, QS0)
            np.testing.assert_array_equal(QA, QA0)
        for lam, lam0 in zip(other.eigenvalues_, ref.eigenvalues_):
            np.testing.assert_allclose(lam, lam0, rtol=1e-12, atol=1e-14)


def test_mc_expectation_is_unbiased():
    """expectation='mc' (one Rademacher combination of the output
    directions per row) estimates the same factors: the mean of many draws
    approaches the exact ones, and a fixed random_state repeats itself."""
    *_, adapter, _ = _case(CONVS["stride2"])
    (A, S), (A2, S2) = EKFACSolver(batch_size=16)._passes(adapter, _case_layers(
        adapter))
    draws = [EKFACSolver(batch_size=16, expectation="mc", random_state=s)._passes(
        adapter, _case_layers(adapter)) for s in range(100)]
    for i, (A0, S0) in enumerate([(A, S), (A2, S2)]):
        # A does not depend on the draws; S is their average.
        np.testing.assert_allclose(draws[0][i][0].numpy(), A0.numpy(), rtol=1e-12)
        S_mc = np.mean([d[i][1].numpy() for d in draws], axis=0)
        single = np.abs(draws[0][i][1].numpy() - S0.numpy()).max()
        mean_err = np.abs(S_mc - S0.numpy()).max()
        assert mean_err < 0.3 * single, (mean_err, single)
    again = EKFACSolver(batch_size=16, expectation="mc", random_state=0)._passes(
        adapter, _case_layers(adapter))
    np.testing.assert_array_equal(again[1][1].numpy(), draws[0][1][1].numpy())
    with pytest.raises(ValueError, match="'exact' or 'mc'"):
        EKFACSolver(expectation="sampled")


def _case_layers(adapter):
    return EKFACSolver()._layers(adapter)
