"""solver_params are validated per solver: key, type and range; y is required."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from skinfluence import InfluenceEstimator

BAD = [
    ("cg", {"max_iter": -1}, r"'max_iter' parameter of solver_params of "
     r"method='cg' must be an int in the range \[1, inf\) or None. Got -1"),
    ("cg", {"max_iter": 0}, r"'max_iter'.*Got 0"),
    ("cg", {"max_iter": "ten"}, r"'max_iter'.*Got 'ten'"),
    ("cg", {"preconditioner": "ilu"}, r"'preconditioner'.*Got 'ilu'"),
    ("cg", {"rank": 2.5}, r"'rank'.*Got 2.5"),
    ("arnoldi", {"rank": 0}, r"'rank' parameter of solver_params of "
     r"method='arnoldi' must be an int in the range \[1, inf\). Got 0"),
    ("arnoldi", {"rank": 2.5}, r"'rank'.*Got 2.5"),
    ("lissa", {"batch_size": 0}, r"'batch_size'.*range \[1, inf\) or None. Got 0"),
    ("lissa", {"repeats": 0}, r"'repeats'.*Got 0"),
    ("lissa", {"depth": 10.5}, r"'depth'.*Got 10.5"),
    ("lissa", {"scale": -1.0}, r"'scale'.*range \(0.0, inf\) or None. Got -1.0"),
    ("direct", {"rank": 3}, r"\['rank'\] do not apply to method='direct'"),
]


@pytest.fixture(scope="module")
def model(cancer):
    Xtr, ytr, _, _ = cancer
    return LogisticRegression(tol=1e-10).fit(Xtr, ytr)


@pytest.mark.parametrize("method, params, message", BAD,
                         ids=[f"{m}-{next(iter(p))}" for m, p, _ in BAD])
def test_bad_solver_params_are_refused(cancer, model, method, params, message):
    Xtr, ytr, _, _ = cancer
    inf = InfluenceEstimator(model, method=method, solver_params=params)
    with pytest.raises((InvalidParameterError, ValueError), match=message):
        inf.fit(Xtr, ytr)


def test_valid_solver_params_are_taken(cancer, model):
    Xtr, ytr, Xte, yte = cancer
    ref = InfluenceEstimator(model).fit(Xtr, ytr).score_influence(Xte, yte)
    for method, params in [("cg", {"max_iter": np.int64(500), "rank": 4,
                                   "preconditioner": "nystrom"}),
                           ("arnoldi", {"rank": 31})]:
        inf = InfluenceEstimator(model, method=method, tol=1e-12,
                                 solver_params=params).fit(Xtr, ytr)
        np.testing.assert_allclose(inf.score_influence(Xte, yte), ref,
                                   rtol=1e-6, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("method", ["score_influence", "influence_on_params"])
def test_y_none_is_refused(cancer, model, method):
    Xtr, ytr, Xte, _ = cancer
    inf = InfluenceEstimator(model).fit(Xtr, ytr)
    with pytest.raises(ValueError, match=rf"{method} needs the targets y.*"
                       "transform"):
        getattr(inf, method)(Xte, None)
