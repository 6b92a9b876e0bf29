"""A fitted estimator pickles (and joblib-dumps) and scores the same after."""

import io
import pickle

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

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
    inf = InfluenceEstimator(model, method=method, **kw).fit(Xtr, ytr)
    again = pickle.loads(pickle.dumps(inf))
    buffer = io.BytesIO()
    joblib.dump(inf, buffer)
    buffer.seek(0)
    dumped = joblib.load(buffer)
    if method == "lissa":  # stochastic: the same seed state on both sides
        inf = pickle.loads(pickle.dumps(inf))
    expected = inf.score_influence(Xte, yte), inf.self_influence()
    for loaded in (again, dumped):  # the same calls in the same order
        np.testing.assert_array_equal(loaded.score_influence(Xte, yte), expected[0])
        np.testing.assert_array_equal(loaded.self_influence(), expected[1])
