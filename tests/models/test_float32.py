"""float32 torch models: gradients and curvature products in float32.

Gradients, curvature products, solves and the contraction with training
gradients all run in the module's dtype on its device; scores leave as
float64 NumPy arrays at the public boundary. The same trained network, in
float32, scores like its float64 self within the tolerance TorchModel
documents.
"""

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.datasets import load_digits

from skinfluence import InfluenceEstimator

torch = pytest.importorskip("torch")

from skinfluence.torch import TorchModel  # noqa: E402

WEIGHT_DECAY = 1e-2


@pytest.fixture(scope="module")
def digits_mlp():
    """A 64-16-10 tanh MLP trained (float64) on 300 digits; 5 test rows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:300], order[300:305]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 10)).double()
    Xt, yt = torch.as_tensor(X[tr]), torch.as_tensor(y[tr])
    opt = torch.optim.LBFGS(net.parameters(), max_iter=500, tolerance_grad=1e-9,
                            tolerance_change=0, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(Xt), yt) + WEIGHT_DECAY / 2 * sum(
            (p ** 2).sum() for p in net.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    yield net, X[tr], y[tr], X[te], y[te]
    torch.set_num_threads(threads)


def _agreement(S, ref):
    err = np.abs(S - ref).max() / np.abs(ref).max()
    spear = min(spearmanr(a, b)[0] for a, b in zip(S, ref))
    return err, spear


@pytest.mark.parametrize("curvature, method", [
    ("hessian", "direct"), ("hessian", "cg"), ("ggn", "cg")])
def test_float32_scores_match_float64(digits_mlp, curvature, method):
    net, Xtr, ytr, Xte, yte = digits_mlp
    kw = dict(weight_decay=WEIGHT_DECAY, curvature=curvature)
    scores = {}
    for dtype in ("float64", "float32"):
        model = TorchModel(net, dtype=dtype, **kw).fit(Xtr, ytr)
        est = InfluenceEstimator(model, method=method, tol=1e-6).fit(Xtr, ytr)
        scores[dtype] = est.score_influence(Xte, yte)
        assert scores[dtype].dtype == np.float64
    assert next(net.parameters()).dtype == torch.float64  # the user's, unchanged
    err, spear = _agreement(scores["float32"], scores["float64"])
    # Measured: relative max error 9e-7 (direct) to 1.8e-6 (cg at tol 1e-6),
    # Spearman 1.0000000 to 7 digits (see TorchModel's dtype); bounded here
    # with room for other BLAS builds.
    assert err < 1e-4, err
    assert spear > 0.999, spear


def test_float32_module_computes_in_float32(digits_mlp):
    net, Xtr, ytr, Xte, yte = digits_mlp
    net32 = TorchModel(net, dtype="float32").fit(Xtr, ytr).module_  # a copy
    model = TorchModel(net32, dtype=None, weight_decay=WEIGHT_DECAY,
                       curvature="ggn").fit(Xtr, ytr)
    assert model.module_ is net32
    est = InfluenceEstimator(model, method="cg").fit(Xtr, ytr)
    ad = est._adapter
    assert ad.dtype == torch.float32 and ad.theta_t.dtype == torch.float32
    assert ad.theta.dtype == np.float64
    V = np.random.default_rng(0).normal(size=(ad.n_params, 3))
    HV = ad.hvp(V)  # NumPy in, float64 NumPy out (a convenience)
    assert HV.dtype == np.float64 and HV.shape == V.shape
    assert ad._linearisations and all(
        lin.M.dtype == torch.float32 for lin in ad._linearisations.values())
    assert ad.hvp(torch.as_tensor(V)).dtype == torch.float32  # tensors stay
    G = ad.user_grad_rows(Xte, yte)
    assert G.dtype == torch.float32 and G.shape == (len(Xte), ad.n_params)
    for _, chunk in ad.train_grad_chunks():
        assert chunk.dtype == torch.float32
    assert est._solver.solve(G.T).dtype == torch.float32
    # float32 products: agree with float64 ones to float32 rounding.
    ref = TorchModel(net, weight_decay=WEIGHT_DECAY, curvature="ggn").fit(Xtr, ytr)
    HV64 = InfluenceEstimator(ref, method="cg").fit(Xtr, ytr)._adapter.hvp(V)
    assert np.abs(HV - HV64).max() < 1e-4 * np.abs(HV64).max()
