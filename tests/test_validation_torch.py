"""Ground truth for torch models: ``loo_influence`` refits a TorchModel.

Each refit minimises ``J_-j(θ) = Σ_{i≠j} l_i(θ) + ½ λ_n ||θ||²`` (λ_n that of
the full objective) warm-started at θ̂, to rounding level. Checked against
(1) skinfluence's GLM refits on the same convex objective, (2) a refit
written here from scratch (scipy L-BFGS, then Newton polish) on a tanh MLP,
and (3) the certification record; (4) skorch nets are taken as well.
"""

import warnings

import numpy as np
import pytest
import scipy.optimize
from scipy.stats import pearsonr
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skinfluence import InfluenceEstimator
from skinfluence.validation import loo_influence

torch = pytest.importorskip("torch")

from skinfluence.torch import TorchModel  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one torch and one BLAS thread (shared cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _unchanged(module, before):
    return all(torch.equal(p, q) for p, q in zip(module.parameters(), before))


# ------------------------------------------------- (1) convex: equals the GLM
@pytest.mark.parametrize("load", [load_breast_cancer, load_iris],
                         ids=["binary", "multinomial"])
@pytest.mark.parametrize("epsilon", [None, 1e-2])
def test_linear_matches_glm_refits(load, epsilon):
    """A Linear layer with weight decay is L2 logistic regression.

    BCE on one logit (binary) or softmax cross-entropy (K logits), sum form
    ``Σ l + ½ n·wd ||w||²``: LogisticRegression with ``C = 1/(n·wd)``, whose
    leave-one-out refits keep the penalty, as the torch refits do.
    """
    X, y = load(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    Xtr, ytr, Xte, yte = X[:-15], y[:-15], X[-15:], y[-15:]
    wd = 1e-2
    clf = LogisticRegression(fit_intercept=False, C=1 / (len(ytr) * wd),
                             tol=1e-12, max_iter=10000).fit(Xtr, ytr)
    net = torch.nn.Linear(X.shape[1], clf.coef_.shape[0], bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.as_tensor(clf.coef_))
    model = TorchModel(net, weight_decay=wd).fit(Xtr, ytr)
    before = _params(net)
    rows = [0, 7, 40, 99, len(ytr) - 1]
    got, info = loo_influence(model, Xtr, ytr, Xte, yte, rows, epsilon=epsilon,
                              return_info=True)
    expected = loo_influence(clf, Xtr, ytr, Xte, yte, rows, epsilon=epsilon)
    assert got.shape == (15, len(rows))
    np.testing.assert_allclose(got, expected, rtol=1e-8,
                               atol=1e-8 * np.abs(expected).max())
    assert info["certified"] and info["max_rel_grad_norm"] <= 1e-8
    assert _unchanged(net, before)  # refits never touch the user's module


def test_pipeline_head_is_fixed():
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, ytr, Xte, yte = X[:-10], y[:-10], X[-10:], y[-10:]
    scaler = StandardScaler().fit(Xtr)
    Z = scaler.transform(Xtr)
    clf = LogisticRegression(fit_intercept=False, C=0.1, tol=1e-12,
                             max_iter=10000).fit(Z, ytr)
    net = torch.nn.Linear(30, 1, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.as_tensor(clf.coef_))
    model = TorchModel(net, weight_decay=10 / len(ytr)).fit(Z, ytr)
    pipe = Pipeline([("scale", scaler), ("net", model)])
    glm = Pipeline([("scale", scaler), ("clf", clf)])
    got = loo_influence(pipe, Xtr, ytr, Xte, yte, [3, 11])
    expected = loo_influence(glm, Xtr, ytr, Xte, yte, [3, 11])
    np.testing.assert_allclose(got, expected, rtol=1e-8,
                               atol=1e-8 * np.abs(expected).max())


def test_refuses_sample_weight_and_bad_rows():
    X, y = load_iris(return_X_y=True)
    model = TorchModel(torch.nn.Linear(4, 3).double(), weight_decay=0.1).fit(X, y)
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        loo_influence(model, X, y, X[:2], y[:2], [0], sample_weight=np.ones(150))
    with pytest.raises(IndexError, match="150"):
        loo_influence(model, X, y, X[:2], y[:2], [150])


# --------------------------------------------- (2) an MLP, refitted by hand
N_TRAIN, WD = 300, 1e-2


def _objective(net, X, y, lam):
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]

    def unflat(theta):
        return {n: q.reshape(s)
                for n, q, s in zip(names, torch.split(theta, sizes), shapes)}

    def J(theta, mask):
        out = torch.func.functional_call(net, unflat(theta), (X,))
        loss = torch.nn.functional.cross_entropy(out, y, reduction="none")
        return (loss * mask).sum() + lam / 2 * (theta**2).sum()

    return J, unflat


def _minimise(J, theta, mask):
    """scipy L-BFGS at gtol 1e-12 from theta, then Newton polish."""
    def f(th):
        th = torch.as_tensor(th).requires_grad_(True)
        value = J(th, mask)
        (g,) = torch.autograd.grad(value, th)
        return float(value.detach()), g.numpy()

    res = scipy.optimize.minimize(
        f, theta.numpy(), jac=True, method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 20000, "maxcor": 50})
    th = torch.as_tensor(res.x)
    # L-BFGS stalls at ~1e-7 (J's rounding); Newton steps finish the job.
    for _ in range(3):
        g = torch.func.grad(J)(th, mask)
        if g.norm() < 1e-11:
            break
        th = th - torch.linalg.solve(torch.func.hessian(J)(th, mask), g)
    assert torch.func.grad(J)(th, mask).norm() < 1e-10
    return th


@pytest.fixture(scope="module")
def mlp():
    """64-8-10 tanh MLP on 300 digits rows, at a tight minimum of J."""
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:N_TRAIN], order[N_TRAIN:N_TRAIN + 5]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 10)).double()
    J, unflat = _objective(net, torch.as_tensor(X[tr]), torch.as_tensor(y[tr]),
                           N_TRAIN * WD)
    ones = torch.ones(N_TRAIN, dtype=torch.float64)
    with threadpool_limits(1):
        theta = _minimise(J, torch.cat([p.detach().reshape(-1)
                                        for p in net.parameters()]), ones)
    with torch.no_grad():
        for p, q in zip(net.parameters(), unflat(theta).values()):
            p.copy_(q)
    model = TorchModel(net, weight_decay=WD).fit(X[tr], y[tr])
    S = InfluenceEstimator(model, method="direct").fit(
        X[tr], y[tr]).score_influence(X[te], y[te])
    # The most influential rows of three test rows, and two others.
    rows = list(dict.fromkeys([int(np.argmax(np.abs(s))) for s in S[:3]] + [11, 200]))
    before = _params(net)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("error", ConvergenceWarning)  # certified
        actual, info = loo_influence(model, X[tr], y[tr], X[te], y[te], rows,
                                     return_info=True)
    assert _unchanged(net, before)
    return dict(model=model, X=X[tr], y=y[tr], Xte=X[te], yte=y[te], J=J,
                unflat=unflat, theta=theta, S=S, rows=rows, actual=actual,
                info=info)


def test_mlp_matches_independent_refit(mlp):
    J, theta, rows = mlp["J"], mlp["theta"], mlp["rows"]
    net = mlp["model"].module_
    Xte, yte = torch.as_tensor(mlp["Xte"]), torch.as_tensor(mlp["yte"])

    def test_loss(th):
        with torch.no_grad():
            out = torch.func.functional_call(net, mlp["unflat"](th), (Xte,))
            return torch.nn.functional.cross_entropy(out, yte,
                                                     reduction="none").numpy()

    base = test_loss(theta)
    expected = []
    for j in rows[:3]:
        mask = torch.ones(N_TRAIN, dtype=torch.float64)
        mask[j] = 0
        expected.append(test_loss(_minimise(J, theta, mask)) - base)
    expected = np.array(expected).T
    actual = mlp["actual"][:, :3]
    np.testing.assert_allclose(actual, expected, rtol=1e-6,
                               atol=1e-6 * np.abs(expected).max())
    # Sign: positive means the row helps; the largest moves are not tiny.
    assert np.abs(expected).max() > 1e-3


def test_mlp_influence_tracks_refits(mlp):
    S, actual, rows = mlp["S"], mlp["actual"], mlp["rows"]
    r = pearsonr(S[:, rows].ravel(), actual.ravel())[0]
    assert r >= 0.95, r


# --------------------------------------------------------- (3) certification
def test_mlp_refits_certified(mlp):
    info, rows = mlp["info"], mlp["rows"]
    assert info["max_rel_grad_norm"] <= 1e-8
    assert info["certified"]
    assert np.all(info["rel_grad_norm"] <= info["rtol_certified"])
    assert np.all(info["positive_definite"]) and info["baseline"]["positive_definite"]
    assert np.all(info["min_eigenvalue"] > 0)
    assert len(info["method"]) == len(rows)
    assert set(info["method"]) <= {"chord", "newton"}
    assert np.all(info["n_iter"] >= 1)


def test_saddle_is_reported():
    """θ = 0 of a bias-free tanh network is stationary, and a saddle.

    Every gradient vanishes there (each layer's gradient carries the other's
    zero weights), so each refit stays at 0, where the Hessian has the
    cross-layer terms ``Σ r x`` beyond the weight decay: indefinite.
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=40)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.Tanh(),
                              torch.nn.Linear(4, 1, bias=False)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    model = TorchModel(net, loss="mse", weight_decay=1e-3).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="not positive definite"):
        _, info = loo_influence(model, X, y, X[:3], y[:3], [0, 1], return_info=True)
    assert not np.any(info["positive_definite"])
    assert not info["baseline"]["positive_definite"]
    assert np.all(info["min_eigenvalue"] < 0)
    assert not info["certified"]


# ------------------------------------------------------------------ (4) skorch
def test_skorch_net_is_refitted():
    skorch = pytest.importorskip("skorch")
    X, y = load_iris(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(y))[:120]
    X, y = StandardScaler().fit_transform(X[rows]), y[rows]
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    net = skorch.NeuralNetClassifier(
        module.double(), max_epochs=30, lr=0.2, optimizer=torch.optim.SGD,
        optimizer__momentum=0.9, optimizer__weight_decay=0.01, train_split=None,
        verbose=0, batch_size=-1).fit(X, y)
    before = _params(net.module_)
    got, info = loo_influence(net, X, y, X[:10], y[:10], [0, 5, 50],
                              return_info=True)
    assert _unchanged(net.module_, before)
    assert info["certified"]
    # The same objective written by hand: cross-entropy on the Linear's
    # logits (skorch's NLLLoss on log(softmax + eps), eps = 2e-16 here).
    hand = TorchModel(net.module_[0], loss="cross_entropy", weight_decay=0.01)
    expected = loo_influence(hand, X, y, X[:10], y[:10], [0, 5, 50])
    np.testing.assert_allclose(got, expected, rtol=1e-6,
                               atol=1e-6 * np.abs(expected).max())
