"""skorch nets taken directly: module, criterion and weight decay read off.

The truth here is a TorchModel written by hand around the same trained
module, with the loss and weight decay that the net's criterion and
optimizer define: both must give identical influence.
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator

torch = pytest.importorskip("torch")
skorch = pytest.importorskip("skorch")

from skinfluence.torch import TorchModel  # noqa: E402


def _data(load, n=120, regression=False):
    X, y = load(return_X_y=True)
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(y))[:n]
    X = StandardScaler().fit_transform(X[rows])
    y = y[rows]
    if regression:
        y = ((y - y.mean()) / y.std()).reshape(-1, 1)
    return X, y


def _net(cls, module, **kw):
    torch.manual_seed(0)
    params = dict(max_epochs=30, lr=0.2, optimizer=torch.optim.SGD,
                  optimizer__momentum=0.9, optimizer__weight_decay=0.01,
                  train_split=None, verbose=0, batch_size=-1)
    params.update(kw)
    return cls(module, **params)


def _scores(model, X, y, Xte, yte, **kw):
    return InfluenceEstimator(model, method="direct", **kw).fit(X, y).score_influence(
        Xte, yte)


def test_classifier_nll_matches_hand_written_torch_model():
    """NeuralNetClassifier's default: NLLLoss on the log of softmax outputs."""
    X, y = _data(load_iris)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    net = _net(skorch.NeuralNetClassifier, module.double()).fit(X, y)
    inf = InfluenceEstimator(net, method="direct").fit(X, y)
    assert inf.estimator_ is net  # predictions stay skorch's
    np.testing.assert_array_equal(inf.predict(X[:5]), net.predict(X[:5]))
    np.testing.assert_array_equal(inf.classes_, [0, 1, 2])
    # The same objective written by hand: softmax cross-entropy on the logits
    # of the Linear layer, weight decay 0.01 on the mean loss.
    hand = TorchModel(net.module_[0], loss="cross_entropy", weight_decay=0.01)
    expected = _scores(hand, X, y, X[:7], y[:7])
    got = inf.score_influence(X[:7], y[:7])
    # skorch adds float64 eps inside the log: a 1e-16 relative change.
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert np.abs(got).max() > 1e-3


def test_binary_classifier_bce_matches_torch_model():
    X, y = _data(load_breast_cancer, n=150)
    X = X[:, :6]
    net = _net(skorch.NeuralNetBinaryClassifier,
               torch.nn.Linear(6, 1).double()).fit(X, y.astype(np.float64))
    got = _scores(net, X, y, X[:5], y[:5])
    hand = TorchModel(net.module_, loss="cross_entropy", weight_decay=0.01)
    np.testing.assert_allclose(got, _scores(hand, X, y, X[:5], y[:5]),
                               rtol=1e-10, atol=1e-14)


def test_regressor_mse_matches_torch_model_and_ridge_objective():
    X, y = _data(load_diabetes, regression=True)
    net = _net(skorch.NeuralNetRegressor, torch.nn.Linear(10, 1).double(),
               max_epochs=400).fit(X, y)
    inf = InfluenceEstimator(net, method="direct").fit(X, y)
    assert inf.estimator_.optimizer_.param_groups[0]["weight_decay"] == 0.01
    hand = TorchModel(net.module_, loss="mse", weight_decay=0.01)
    np.testing.assert_allclose(inf.score_influence(X[:5], y[:5]),
                               _scores(hand, X, y, X[:5], y[:5]), rtol=1e-10,
                               atol=1e-14)
    # Full-batch SGD reached the minimum of the objective the influence assumes.
    grad = inf._adapter.objective_gradient()
    assert np.linalg.norm(grad) < 1e-6 * len(y)


def test_unfitted_net_is_fitted_and_cloneable():
    X, y = _data(load_iris)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    net = _net(skorch.NeuralNetClassifier, module.double())
    inf = InfluenceEstimator(net, method="cg")
    twin = clone(inf)
    assert twin.get_params()["estimator"] is not net
    inf.fit(X, y)
    assert len(net.history) == 30  # trained by fit
    scores = inf.score_influence(X[:3], y[:3])
    assert scores.shape == (3, len(y))
    assert inf.solver_info_["method"] == "cg"


def test_weight_decay_read_and_refusals():
    X, y = _data(load_iris)
    mk = lambda **kw: _net(skorch.NeuralNetClassifier,  # noqa: E731
                           torch.nn.Sequential(torch.nn.Linear(4, 3),
                                               torch.nn.Softmax(dim=1)).double(),
                           max_epochs=2, **kw)
    assert TorchModel.from_skorch(mk(optimizer__weight_decay=0.003).fit(X, y)
                                  ).weight_decay == 0.003
    with pytest.raises(ValueError, match="reduction='sum'"):
        TorchModel.from_skorch(mk(criterion__reduction="sum").fit(X, y))
    with pytest.raises(ValueError, match="class weights"):
        TorchModel.from_skorch(mk(
            criterion__weight=torch.ones(3, dtype=torch.float64)).fit(X, y))
    with pytest.raises(ValueError, match="not initialized"):
        TorchModel.from_skorch(mk())
    with pytest.warns(UserWarning, match="train_split"):
        TorchModel.from_skorch(mk(train_split=skorch.dataset.ValidSplit(5)).fit(X, y))
    with pytest.raises(TypeError, match="skorch NeuralNet"):
        TorchModel.from_skorch(torch.nn.Linear(4, 3))


def test_params_subset_through_from_skorch():
    X, y = _data(load_iris)
    module = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(),
                                 torch.nn.Linear(5, 3), torch.nn.Softmax(dim=1))
    net = _net(skorch.NeuralNetClassifier, module.double(), max_epochs=5).fit(X, y)
    model = TorchModel.from_skorch(net, params=["2.weight", "2.bias"])
    inf = InfluenceEstimator(model, method="direct").fit(X, y)
    assert inf.n_params_ == 18
