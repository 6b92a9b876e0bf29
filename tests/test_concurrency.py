"""A fitted estimator called from several threads gives the single-threaded numbers.

Each test fits two identical estimators: one scores in the main thread (the
reference), the other, untouched before, is hit by 4 threads x 8 calls, so
that its lazily computed state (the torch adapter's training gradients) is
also built under contention.
"""

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator

N_THREADS, N_CALLS = 4, 8


def _call(est, X, y):
    """What a call computes: scores, self-influence, transform, one array."""
    return np.column_stack([est.score_influence(X, y), est.self_influence(X, y),
                            est.transform(X)])


def _hammer(fn, side=None):
    """``N_CALLS`` calls of ``fn`` on ``N_THREADS`` threads, started together.

    ``side``, if given, runs every millisecond on a thread of its own until
    they end.
    """
    start, done = threading.Barrier(N_THREADS), threading.Event()

    def task(i):
        if i < N_THREADS:
            start.wait()
        return fn()

    with ThreadPoolExecutor(N_THREADS + (side is not None)) as pool:
        if side is not None:
            def loop():
                while not done.wait(1e-3):
                    side()
            looping = pool.submit(loop)
        try:
            results = [f.result() for f in
                       [pool.submit(task, i) for i in range(N_CALLS)]]
        finally:
            done.set()
        if side is not None:
            looping.result()  # re-raises what the side loop raised
    return results


# ------------------------------------------------------------------- GLM
@pytest.mark.parametrize("method, kw", [("direct", {}), ("cg", {"tol": 1e-10})])
def test_glm_threads_match_one_thread(method, kw):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    Xtr, ytr, Xte, yte = X[:150], y[:150], X[-20:], y[-20:]
    model = LogisticRegression(tol=1e-10).fit(Xtr, ytr)
    expected = _call(InfluenceEstimator(model, method=method, **kw).fit(Xtr, ytr),
                     Xte, yte)
    est = InfluenceEstimator(model, method=method, **kw).fit(Xtr, ytr)
    for got in _hammer(lambda: _call(est, Xte, yte)):
        # OpenBLAS called from several threads at once may run each call on
        # fewer threads, with another summation order: 1 ulp apart, where a
        # race was 0.2 off.
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------- torch
@pytest.fixture(scope="module")
def mlp():
    """A 64-6-10 tanh MLP trained on 80 digits, float64; 150 test rows."""
    torch = pytest.importorskip("torch")
    from skinfluence.torch import TorchModel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic products, bitwise
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, ytr, Xte, yte = X[:80], y[:80], X[-150:], y[-150:]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 6), torch.nn.Tanh(),
                              torch.nn.Linear(6, 10)).double()
    weight_decay = 0.5  # a positive definite Hessian, and few cg iterations
    Xt, yt = torch.as_tensor(Xtr), torch.as_tensor(ytr)
    opt = torch.optim.LBFGS(net.parameters(), max_iter=500, tolerance_grad=1e-9,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(Xt), yt) + weight_decay / 2 * sum(
            (p ** 2).sum() for p in net.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    model = TorchModel(net, weight_decay=weight_decay).fit(Xtr, ytr)
    yield model, Xtr, ytr, Xte, yte
    torch.set_num_threads(threads)


# Test rows per call: enough work for races to show up (per-row gradients
# take 64 rows per pass); cg's solves are work enough with fewer.
@pytest.mark.parametrize("method, kw, n_test", [
    ("direct", {}, 150), ("cg", {"tol": 1e-10}, 8), ("ekfac", {}, 150)])
def test_torch_threads_match_one_thread(mlp, method, kw, n_test):
    import torch

    model, Xtr, ytr, Xte, yte = mlp
    Xte, yte = Xte[:n_test], yte[:n_test]
    model = copy.deepcopy(model)  # each test its own module
    net = model.module_
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    proba = model.predict_proba(Xte)
    expected = _call(InfluenceEstimator(model, method=method, **kw).fit(Xtr, ytr),
                     Xte, yte)
    est = InfluenceEstimator(model, method=method, **kw).fit(Xtr, ytr)

    def predict():  # the user's own calls, meanwhile
        np.testing.assert_allclose(model.predict_proba(Xte), proba, rtol=1e-12)

    # To 1e-12, not bit for bit: BLAS may sum in another order when called
    # from several threads; the races this guards against were 0.2 off.
    for got in _hammer(lambda: _call(est, Xte, yte), side=predict):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    # The user's module still holds its own parameters, unchanged.
    for n, p in net.named_parameters():
        assert type(p) is torch.nn.Parameter, n
        assert torch.equal(p, before[n]), n
