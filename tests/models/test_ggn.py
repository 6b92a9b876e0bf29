"""curvature="ggn": the Gauss-Newton matrix of a torch model, matrix-free.

Checked against the dense ``sum_j J_j' M_j J_j + lambda_n I`` built from
per-row Jacobians, and against the exact Hessian where the two coincide
(a linear model: the network's second derivative vanishes).
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator

torch = pytest.importorskip("torch")

from skinfluence.torch import TorchModel  # noqa: E402


def _mlp_data(n=60):
    X, y = load_digits(return_X_y=True)
    X = X[:n, ::4] / 16.0  # 16 pixels: a small dense Jacobian
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 6), torch.nn.Tanh(),
                              torch.nn.Linear(6, 10)).double()
    return net, X, y[:n]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_ggn_products_equal_dense_gauss_newton(loss):
    net, X, y = _mlp_data()
    if loss == "mse":
        y = np.eye(10)[y]
    model = TorchModel(net, loss=loss, weight_decay=1e-2, curvature="ggn").fit(X, y)
    inf = InfluenceEstimator(model, method="direct").fit(X, y)
    ad = inf._adapter
    Jac = torch.func.vmap(torch.func.jacrev(
        lambda th, x: ad._output(th, x[None])[0]), in_dims=(None, 0))(ad.theta_t, ad.X)
    with torch.no_grad():
        out = net(ad.X)
    if loss == "cross_entropy":
        p = torch.softmax(out, 1)
        M = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    else:  # squared error summed over outputs: M = 2 I
        M = 2 * torch.eye(10, dtype=torch.float64).expand(len(X), 10, 10)
    G = (torch.einsum("nkp,nkl,nlq->pq", Jac, M, Jac)
         + ad.lambda_n * torch.eye(ad.n_params, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(ad.hessian().numpy(), G, rtol=1e-10,
                               atol=1e-12 * np.abs(G).max())
    # And it differs from the Hessian of this non-linear network.
    hess = TorchModel(net, loss=loss, weight_decay=1e-2).fit(X, y)
    H = InfluenceEstimator(hess, method="cg").fit(X, y)._adapter.hessian().numpy()
    assert np.abs(H - G).max() > 1e-3 * np.abs(G).max()


def test_ggn_equals_hessian_for_a_linear_model_and_solvers_agree():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3).double()
    kw = dict(weight_decay=1e-2)
    ggn = TorchModel(net, curvature="ggn", **kw).fit(X, y)
    hess = TorchModel(net, **kw).fit(X, y)
    expected = InfluenceEstimator(hess, method="direct").fit(X, y).score_influence(
        X[:5], y[:5])
    for method in ("direct", "cg"):
        inf = InfluenceEstimator(ggn, method=method, tol=1e-12).fit(X, y)
        assert inf.solver_info_["curvature"] == "ggn"
        np.testing.assert_allclose(inf.score_influence(X[:5], y[:5]), expected,
                                   rtol=1e-6, atol=1e-10 * np.abs(expected).max())


def test_ggn_is_positive_definite_where_the_hessian_is_not():
    # A ReLU net far from a minimum: the Hessian has negative curvature.
    net, X, y = _mlp_data()
    net[1] = torch.nn.ReLU()
    hess = TorchModel(net, weight_decay=1e-4).fit(X, y)
    with pytest.raises(ValueError, match="not positive definite"):
        InfluenceEstimator(hess, method="direct").fit(X, y)
    ggn = TorchModel(net, weight_decay=1e-4, curvature="ggn").fit(X, y)
    S = InfluenceEstimator(ggn, method="direct").fit(X, y).score_influence(X[:3], y[:3])
    assert np.all(np.isfinite(S))


def test_bad_curvature_name():
    net, X, y = _mlp_data()
    with pytest.raises(ValueError, match="curvature must be 'hessian' or 'ggn'"):
        TorchModel(net, curvature="fisher").fit(X, y)


def _dense_curvature(ad, curvature):
    """Per-row curvature matrices (n, p, p): J_j' M_j J_j, or the Hessians H_j."""
    if curvature == "hessian":
        return torch.func.vmap(torch.func.hessian(ad._loss_one), in_dims=(None, 0, 0))(
            ad.theta_t, ad.X, ad.y)
    Jac = torch.func.vmap(torch.func.jacrev(
        lambda th, x: ad._output(th, x[None])[0]), in_dims=(None, 0))(ad.theta_t, ad.X)
    with torch.no_grad():
        out = ad._output(ad.theta_t, ad.X)
    M = ad.output_hessians(out, ad.y)
    return torch.einsum("nkp,nkl,nlq->npq", Jac, M, Jac)


@pytest.mark.parametrize("curvature", ["ggn", "hessian"])
def test_cached_products_equal_dense_across_batches_and_samples(curvature, monkeypatch):
    """Linearised products, kept per batch, against dense per-row curvature.

    Three batches (25 + 25 + 10 rows), each linearised at the first product
    and reused by the next ones; LiSSA's mini-batch products (``rows=``) are
    linearised for the one product and leave the cache alone; with no
    budget nothing is kept and the products are the same.
    """
    from skinfluence.models._torch import TorchAdapter

    net, X, y = _mlp_data()
    model = TorchModel(net, weight_decay=1e-2, curvature=curvature).fit(X, y)
    ad = TorchAdapter(model, X, y, batch_size=25)
    Hj = _dense_curvature(ad, curvature).numpy()
    eye = ad.lambda_n * np.eye(ad.n_params)
    V = np.random.default_rng(0).normal(size=(ad.n_params, 40))  # 2 column passes
    expected = (Hj.sum(0) + eye) @ V
    tol = dict(rtol=1e-10, atol=1e-12 * np.abs(expected).max())
    for _ in range(3):
        np.testing.assert_allclose(ad.hvp(V), expected, **tol)
    assert sorted(ad._linearisations) == [(0, 25), (25, 50), (50, 60)]
    kept = {k: id(v) for k, v in ad._linearisations.items()}
    for seed in range(3):  # the rows LiSSA's sample draws, drawn again
        idx = np.sort(np.random.default_rng(seed).choice(len(X), 17, replace=False))
        got = ad._sample(np.random.default_rng(seed), 17)(V)
        want = (len(X) / 17 * Hj[idx].sum(0) + eye) @ V
        np.testing.assert_allclose(got, want, rtol=1e-10,
                                   atol=1e-12 * np.abs(want).max())
    assert {k: id(v) for k, v in ad._linearisations.items()} == kept
    assert V.flags.writeable and ad.hvp(V) is not ad.hvp(V)  # fresh, writeable
    monkeypatch.setattr("skinfluence.models._torch.LINEARISATION_MAX_BYTES", 0)
    bare = TorchAdapter(model, X, y, batch_size=25)
    np.testing.assert_allclose(bare.hvp(V), expected, **tol)
    assert bare._linearisations == {}


def test_pickled_adapter_drops_linearisations():
    import pickle

    net, X, y = _mlp_data()
    model = TorchModel(net, weight_decay=1e-2, curvature="ggn").fit(X, y)
    ad = InfluenceEstimator(model, method="cg").fit(X, y)._adapter
    V = np.random.default_rng(0).normal(size=(ad.n_params, 3))
    HV = ad.hvp(V)
    assert ad._linearisations
    back = pickle.loads(pickle.dumps(ad))
    assert back._linearisations == {} and ad._linearisations
    np.testing.assert_allclose(back.hvp(V), HV, rtol=1e-12)


@pytest.mark.parametrize("curvature", ["ggn", "hessian"])
def test_products_fall_back_to_forward_mode(curvature, monkeypatch):
    """An operation without a double backward: forward mode, recomputed."""
    from skinfluence.models import _torch

    net, X, y = _mlp_data()
    model = TorchModel(net, weight_decay=1e-2, curvature=curvature).fit(X, y)
    ad = _torch.TorchAdapter(model, X, y)
    V = np.random.default_rng(0).normal(size=(ad.n_params, 5))
    expected = ad.hvp(V)

    def fails(self, V):
        raise RuntimeError("double backward not implemented")

    monkeypatch.setattr(_torch._Linearisation, "product", fails)
    other = _torch.TorchAdapter(model, X, y)
    np.testing.assert_allclose(other.hvp(V), expected, rtol=1e-10,
                               atol=1e-12 * np.abs(expected).max())
    assert other._recompute and other._linearisations == {}
