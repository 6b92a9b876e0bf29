"""scikit-learn's estimator checks on wrapped models."""

from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import (
    Lasso,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
    RidgeCV,
    TweedieRegressor,
)
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR, LinearSVR
from sklearn.utils.estimator_checks import parametrize_with_checks

from skinfluence import InfluenceEstimator

ESTIMATORS = [
    InfluenceEstimator(LogisticRegression()),
    InfluenceEstimator(Ridge()),
    InfluenceEstimator(make_pipeline(StandardScaler(), LogisticRegression())),
    InfluenceEstimator(RidgeCV()),
    InfluenceEstimator(GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=2)),
    InfluenceEstimator(RidgeClassifier()),
    InfluenceEstimator(PoissonRegressor()),
    InfluenceEstimator(KernelRidge(kernel="rbf")),
    InfluenceEstimator(Lasso(alpha=0.01)),
    InfluenceEstimator(LinearSVR(random_state=0)),
    InfluenceEstimator(SVR(kernel="linear")),
    InfluenceEstimator(TweedieRegressor(power=1.5, link="log")),
]


_ROWS_ARE_COLUMNS = (
    "transform has one column per training row, so repeating a row (instead "
    "of weighting it) changes the output's shape by design"
)


def _expected_failed_checks(estimator):
    return {
        "check_sample_weight_equivalence_on_dense_data": _ROWS_ARE_COLUMNS,
        "check_sample_weight_equivalence_on_sparse_data": _ROWS_ARE_COLUMNS,
    }


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
