"""Every Display, one argument order, every model family.

``from_estimator(influence_estimator, X_train, y_train, X_test, y_test,
...)`` for LOOAgreementDisplay, TopInfluenceDisplay and
InfluenceScatterDisplay, on a GLM, a Pipeline, a TorchModel, a skorch net
and scikit-learn's MLPClassifier: the same data, the Display's numbers
those of the estimator it was given.
"""

import inspect

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceEstimator
from skinfluence.plotting import (
    InfluenceScatterDisplay,
    LOOAgreementDisplay,
    TopInfluenceDisplay,
)

DISPLAYS = (LOOAgreementDisplay, TopInfluenceDisplay, InfluenceScatterDisplay)


@pytest.fixture
def pyplot():
    plt = pytest.importorskip("matplotlib.pyplot")
    yield plt
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    X, y = load_iris(return_X_y=True)
    keep = y < 2  # two classes, two features: every Display applies
    X, y = X[keep][:, :2], y[keep]
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(y))
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    X = X + 0.3 * rng.normal(size=X.shape)  # not separable
    return X[rows[:70]], y[rows[:70]], X[rows[70:]], y[rows[70:]]


def _glm(X, y):
    return LogisticRegression(C=1.0).fit(X, y)


def _pipeline(X, y):
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(X, y)


def _torch_model(X, y):
    torch = pytest.importorskip("torch")
    from skinfluence.torch import TorchModel

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(),
                                 torch.nn.Linear(4, 2)).double()
    decay = 0.05
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    opt = torch.optim.LBFGS(module.parameters(), max_iter=500,
                            tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(Xt), yt) + decay / 2 * sum(
            (p ** 2).sum() for p in module.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return TorchModel(module, loss="cross_entropy", weight_decay=decay).fit(X, y)


def _skorch(X, y):
    torch = pytest.importorskip("torch")
    skorch = pytest.importorskip("skorch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(2, 2),
                                 torch.nn.Softmax(dim=1)).double()
    return skorch.NeuralNetClassifier(
        module, max_epochs=200, lr=0.5, optimizer=torch.optim.SGD,
        optimizer__weight_decay=0.05, train_split=None, verbose=0,
        batch_size=-1).fit(X, y)


def _mlp(X, y):
    pytest.importorskip("torch")
    return MLPClassifier(hidden_layer_sizes=(3,), activation="tanh", alpha=5.0,
                         solver="lbfgs", max_iter=2000, tol=1e-10,
                         random_state=0).fit(X, y)


FAMILIES = {"glm": _glm, "pipeline": _pipeline, "torch": _torch_model,
            "skorch": _skorch, "mlp": _mlp}


def test_one_argument_order():
    for display in DISPLAYS:
        names = list(inspect.signature(display.from_estimator).parameters)
        assert names[:5] == ["influence_estimator", "X_train", "y_train", "X_test",
                             "y_test"], display.__name__


@pytest.mark.parametrize("family", FAMILIES)
def test_every_display_takes_every_family(pyplot, data, family):
    Xtr, ytr, Xte, yte = data
    model = FAMILIES[family](Xtr, ytr)
    damping = 0.0 if family in ("glm", "pipeline") else 1e-3
    inf = InfluenceEstimator(model, damping=damping).fit(Xtr, ytr)
    scores = inf.score_influence(Xte[:3], yte[:3])

    rows = [0, 5, 11]
    loo = LOOAgreementDisplay.from_estimator(inf, Xtr, ytr, Xte[:3], yte[:3],
                                             train_indices=rows)
    np.testing.assert_allclose(loo.predicted, scores[:, rows].sum(axis=0))
    assert np.all(np.isfinite(loo.actual))
    assert loo.pearson_ > 0.9  # a smooth, well-regularised model

    top = TopInfluenceDisplay.from_estimator(inf, Xtr, ytr, Xte[0], yte[0], k=2)
    np.testing.assert_array_equal(top.helpful_indices, np.argsort(-scores[0])[:2])
    np.testing.assert_array_equal(top.harmful_indices, np.argsort(scores[0])[:2])

    scatter = InfluenceScatterDisplay.from_estimator(inf, Xtr, ytr, Xte[1], yte[1])
    np.testing.assert_allclose(scatter.influence, scores[1])
