"""A torch model's computation stays on its device and in its dtype.

Gradients, curvature products, every solver's iterates and the contraction
with training gradients are tensors of the module's dtype on its device;
NumPy appears at the public boundary only (float64 scores). The tests run
on the CPU everywhere and on CUDA where it is available (skipped
otherwise), where a stray NumPy round trip would also cost a transfer.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skinfluence import InfluenceEstimator  # noqa: E402
from skinfluence.torch import TorchModel  # noqa: E402

CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="CUDA is not available")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
METHODS = {
    "direct": {},
    "cg": {},
    "cg-nystrom": {"preconditioner": "nystrom", "rank": 20},
    "cg-ekfac": {"preconditioner": "ekfac"},
    "lissa": {"depth": 2000},
    "arnoldi": {"rank": 50},
    "ekfac": {},
}
WEIGHT_DECAY = 0.05


@pytest.fixture(scope="module")
def trained():
    """A 6-5-3 tanh MLP (53 parameters) trained to a tight minimum."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0.5)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(),
                              torch.nn.Linear(5, 3)).double()
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    opt = torch.optim.LBFGS(net.parameters(), max_iter=2000, tolerance_grad=1e-12,
                            tolerance_change=0, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(Xt), yt) + WEIGHT_DECAY / 2 * (
            sum((p ** 2).sum() for p in net.parameters()))
        loss.backward()
        return loss

    opt.step(closure)
    return net, X[:60], y[:60], X[60:], y[60:]


def _spied(est):
    """Record the kind of every array the fitted solver is given and returns."""
    seen = []
    solve = est._solver.solve

    def spy(B):
        X = solve(B)
        seen.append((B, X))
        return X

    est._solver.solve = spy
    return seen


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", METHODS)
def test_solves_and_contractions_stay_on_device(trained, name, dtype, device):
    net, Xtr, ytr, Xte, yte = trained
    method = name.split("-")[0]
    model = TorchModel(net, weight_decay=WEIGHT_DECAY, curvature="ggn",
                       dtype=dtype, device=device).fit(Xtr, ytr)
    est = InfluenceEstimator(model, method=method, tol=1e-4,
                             solver_params=METHODS[name]).fit(Xtr, ytr)
    seen = _spied(est)
    with np.errstate(all="raise"):
        S = est.score_influence(Xte, yte)
    own = est.self_influence()
    shifts = est.influence_on_params(Xtr[:3], ytr[:3])
    want = (getattr(torch, dtype), torch.device(device).type)
    assert len(seen) == 3
    for B, X in seen:
        for a in (B, X):
            assert torch.is_tensor(a) and (a.dtype, a.device.type) == want
    rows = est._engine.train_rows(est, 1)
    G = rows.grads(slice(0, 4))
    assert torch.is_tensor(G) and (G.dtype, G.device.type) == want
    if method in ("cg", "lissa", "arnoldi"):
        op = est._solver.op_
        assert (op.template.dtype, op.template.device.type) == want
    # The public boundary: float64 NumPy, equal to the float64 CPU answer.
    for out in (S, own, shifts):
        assert isinstance(out, np.ndarray) and out.dtype == np.float64
    ref_model = TorchModel(net, weight_decay=WEIGHT_DECAY, curvature="ggn").fit(
        Xtr, ytr)
    ref = InfluenceEstimator(ref_model, method="direct").fit(Xtr, ytr)
    expected = ref.score_influence(Xte, yte)
    if method == "ekfac":  # an approximation of the curvature: its own answer
        expected = InfluenceEstimator(ref_model, method="ekfac").fit(
            Xtr, ytr).score_influence(Xte, yte)
    err = np.abs(S - expected).max() / np.abs(expected).max()
    # Measured on the CPU: float64 <= 1.3e-15 (every solver converges on
    # this small H long before tol), float32 2.7e-7 (direct) to 6.0e-7 (cg).
    assert err < (1e-10 if dtype == "float64" else 1e-5), err


@pytest.mark.parametrize("device", DEVICES)
def test_directional_rows_contract_on_device(trained, device, monkeypatch):
    """Wide networks' forward-mode contraction (no per-row gradients held)."""
    from skinfluence import _torch_path

    net, Xtr, ytr, Xte, yte = trained
    model = TorchModel(net, weight_decay=WEIGHT_DECAY, curvature="ggn",
                       device=device).fit(Xtr, ytr)
    est = InfluenceEstimator(model, method="direct").fit(Xtr, ytr)
    expected = est.score_influence(Xte, yte)
    monkeypatch.setattr(_torch_path, "TRAIN_GRAD_BYTES", 0)
    rows = est._engine.train_rows(est, len(Xte))
    assert isinstance(rows, _torch_path.DirectionalRows)
    L = est._solver.solve(est._adapter.user_grad_rows(Xte, yte).T).T
    block = rows.contract(L, slice(0, 10))
    assert torch.is_tensor(block) and block.device.type == device
    np.testing.assert_allclose(est.score_influence(Xte, yte), expected,
                               rtol=1e-10, atol=1e-12 * np.abs(expected).max())
