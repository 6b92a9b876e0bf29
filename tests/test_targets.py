"""Bad targets y get a clear ValueError on every path that takes y."""

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceEstimator

N = 60  # training rows; the other calls take the first 8


def _glm(kind):
    if kind == "ridge":
        X, y = make_regression(N, 4, noise=1.0, random_state=0)
        return Ridge().fit(X, y), X, y
    n_classes = 2 if kind == "binary" else 3
    X, y = make_classification(N, 4, n_informative=3, n_redundant=0,
                               n_classes=n_classes, random_state=0)
    return LogisticRegression().fit(X, y), X, y


def _torch(kind):
    torch = pytest.importorskip("torch")
    from skinfluence.torch import TorchModel

    X, y = make_classification(N, 4, n_informative=3, n_redundant=0,
                               n_classes=3, random_state=0)
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3).double()
    return TorchModel(net, weight_decay=0.1, classes=[0, 1, 2]).fit(X, y), X, y


MODELS = {"binary": _glm, "multinomial": _glm, "ridge": _glm, "torch": _torch}


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    model, X, y = MODELS[request.param](request.param)
    return request.param, model, InfluenceEstimator(model).fit(X, y), X, y


# Each call takes (X, y) rows: the training rows for fit, else 8 of them.
CALLS = {
    "fit": lambda inf, X, y: InfluenceEstimator(inf.estimator).fit(X, y),
    "score_influence": lambda inf, X, y: inf.score_influence(X, y),
    "influence_on_params": lambda inf, X, y: inf.influence_on_params(X, y),
    "self_influence": lambda inf, X, y: inf.self_influence(X, y),
}


def _rows(call, X, y):
    return (X, y) if call == "fit" else (X[:8], y[:8])


@pytest.mark.parametrize("call", CALLS)
def test_2d_y_names_its_shape(case, call):
    kind, _, inf, X, y = case
    X, y = _rows(call, X, y)
    expected = "a classifier" if kind != "ridge" else "a single-output regressor"
    with pytest.raises(ValueError, match=(
            rf"y must be of shape \(n_samples,\).*{expected}.*got shape "
            rf"\({len(y)}, 2\)")):
        CALLS[call](inf, X, np.column_stack([y, y]))


@pytest.mark.parametrize("call", CALLS)
def test_column_y_is_raveled_with_a_warning(case, call):
    _, _, inf, X, y = case
    X, y = _rows(call, X, y)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        out = CALLS[call](inf, X, y[:, None])
    expected = CALLS[call](inf, X, y)
    if call == "fit":
        out, expected = out.self_influence(), expected.self_influence()
    np.testing.assert_allclose(out, expected)


@pytest.mark.parametrize("call", CALLS)
def test_mixed_label_types(case, call):
    kind, _, inf, X, y = case
    X, y = _rows(call, X, y)
    mixed = np.array([1, "a", 2.0] + [0] * (len(y) - 3), dtype=object)
    match = ("y must be numeric for a regressor; could not convert string to "
             "float: 'a'" if kind == "ridge" else
             r"y has labels of mixed types \['float', 'int', 'str'\]; a "
             "classifier's labels must be all strings or all numbers")
    with pytest.raises(ValueError, match=match):
        CALLS[call](inf, X, mixed)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("label", [7, "a"])
def test_labels_not_seen_at_fit(case, call, label):
    kind, _, inf, X, y = case
    if kind == "ridge":
        pytest.skip("a regressor has no labels")
    X, y = _rows(call, X, y)
    if label == 7:
        bad = y.copy()
        bad[1] = label
    else:  # strings, as objects, do not compare with the int classes
        bad = np.full(len(y), label, dtype=object)
    with pytest.raises(ValueError, match=(
            rf"y contains labels the model never saw: \[{label!r}\]; the "
            rf"model's classes_ are \[0, 1(, 2)?\]")):
        CALLS[call](inf, X, bad)


@pytest.mark.parametrize("call", CALLS)
def test_length_mismatch(case, call):
    _, _, inf, X, y = case
    X, y = _rows(call, X, y)
    with pytest.raises(ValueError, match=(
            rf"X has {len(y)} rows but y has {len(y) - 1}; they must match")):
        CALLS[call](inf, X, y[:-1])
