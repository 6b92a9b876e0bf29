"""A fitted estimator pickles (and joblib-dumps) and scores the same after."""

import io
import pickle

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator

SETTINGS = [
    ("direct", {}),
    ("direct", {"solver_params": {"form": "dual"}}),
    ("cg", {"tol": 1e-10}),
    ("cg", {"tol": 1e-10, "solver_params": {"preconditioner": "nystrom",
                                            "rank": 5}}),
    ("lissa", {"random_state": 0, "solver_params": {"depth": 200,
                                                    "batch_size": 64}}),
    ("arnoldi", {"random_state": 0, "solver_params": {"rank": 20}}),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("method, kw", SETTINGS,
                         ids=["direct", "dual", "cg", "cg-nystrom", "lissa",
                              "arnoldi"])
def test_fitted_estimator_round_trips(cancer, method, kw):
    Xtr, ytr, Xte, yte = cancer
    Xtr, ytr = Xtr[:25], ytr[:25]  # fewer rows than parameters: dual applies
    model = LogisticRegression(tol=1e-10).fit(Xtr, ytr)
    _check_round_trips(InfluenceEstimator(model, method=method, **kw).fit(Xtr, ytr),
                       Xte, yte, stochastic=method == "lissa")


def _check_round_trips(inf, Xte, yte, stochastic=False):
    """pickle and joblib copies of ``inf`` score exactly as it does."""
    again = pickle.loads(pickle.dumps(inf))
    buffer = io.BytesIO()
    joblib.dump(inf, buffer)
    buffer.seek(0)
    dumped = joblib.load(buffer)
    if stochastic:  # the same seed state on both sides
        inf = pickle.loads(pickle.dumps(inf))
    expected = inf.score_influence(Xte, yte), inf.self_influence()
    for loaded in (again, dumped):  # the same calls in the same order
        np.testing.assert_array_equal(loaded.score_influence(Xte, yte), expected[0])
        np.testing.assert_array_equal(loaded.self_influence(), expected[1])


# ----------------------------------------------------------------- torch
def _squared_error(out, t):
    """A user's per-row loss: module-level, so it pickles."""
    return ((out - t.reshape(out.shape)) ** 2).sum(dim=1) / 2


TORCH_SETTINGS = [
    ("direct", {}),
    ("cg", {"tol": 1e-10}),
    # Full Hessian products: a deterministic series.
    ("lissa", {"random_state": 0, "solver_params": {"depth": 20}}),
    # Mini-batches drawn from the pickled random state.
    ("lissa", {"random_state": 0, "solver_params": {"depth": 20,
                                                    "batch_size": 16}}),
    ("arnoldi", {"random_state": 0, "solver_params": {"rank": 10}}),
    ("ekfac", {}),
]


def _torch_model(loss, Xtr, ytr, weight_decay=0.5):
    """A tanh MLP trained to a minimum of its objective (positive Hessian)."""
    import torch

    from skinfluence.torch import TorchModel

    torch.manual_seed(0)
    n_out = 3 if loss == "cross_entropy" else 1
    net = torch.nn.Sequential(torch.nn.Linear(Xtr.shape[1], 4), torch.nn.Tanh(),
                              torch.nn.Linear(4, n_out)).double()
    model = TorchModel(net, loss=loss, weight_decay=weight_decay).fit(Xtr, ytr)
    rows = model._loss_fn()
    Xt, yt = model._to_tensor(Xtr), model._target_tensor(ytr)
    opt = torch.optim.LBFGS(net.parameters(), max_iter=500, tolerance_grad=1e-10,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = rows(net(Xt), yt).mean() + weight_decay / 2 * sum(
            (p ** 2).sum() for p in net.parameters())
        value.backward()
        return value

    opt.step(closure)
    return model


@pytest.fixture(scope="module")
def torch_cases():
    """Per loss: a trained model, 30 training rows (iris classes or diabetes
    targets) and 5 test rows."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    order = np.random.default_rng(0).permutation(len(y))
    iris = X[order[:30]], y[order[:30]], X[order[-5:]], y[order[-5:]]
    X, y = load_diabetes(return_X_y=True)
    X, y = StandardScaler().fit_transform(X), (y - y.mean()) / y.std()
    diabetes = X[:30], y[:30], X[-5:], y[-5:]
    yield {loss: (_torch_model(loss, *data[:2]), *data) for loss, data in [
        ("cross_entropy", iris), ("mse", diabetes), (_squared_error, diabetes)]}
    torch.set_num_threads(threads)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("method, kw", TORCH_SETTINGS,
                         ids=["direct", "cg", "lissa", "lissa-batch", "arnoldi",
                              "ekfac"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_fitted_torch_estimator_round_trips(torch_cases, loss, method, kw):
    model, Xtr, ytr, Xte, yte = torch_cases[loss]
    inf = InfluenceEstimator(model, method=method, **kw).fit(Xtr, ytr)
    _check_round_trips(inf, Xte, yte, stochastic="batch_size" in kw.get(
        "solver_params", {}))


def test_torch_estimator_with_own_loss_round_trips(torch_cases):
    model, Xtr, ytr, Xte, yte = torch_cases[_squared_error]
    _check_round_trips(InfluenceEstimator(model, method="cg", tol=1e-10).fit(
        Xtr, ytr), Xte, yte)
