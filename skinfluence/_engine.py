"""The one internal interface every model family implements.

:class:`~skinfluence.InfluenceEstimator` holds no per-family code: ``fit``
picks an engine for the model (:func:`engine_for`), and every public method
is written once against these operations and the shared scoring module
(:mod:`skinfluence._scoring`), whose chunking by ``working_memory``, joblib
dispatch, progress bar and streaming top-k serve both families alike.

With ``H`` the Hessian of the training objective (or its stand-in: the
Gauss-Newton matrix, EK-FAC) and ``g`` gradients in parameter space:

- ``loss_left(est, X, y)``: rows ``H^-1 grad L_i`` for the test losses,
  the function that turns their contraction with training rows into loss
  changes (the Newton estimate's exact loss at moved parameters; None for
  first order), a low-rank extra term (class re-weighting) and the number
  of test rows;
- ``output_left(est, X)``: the same for the measured outputs (``transform``);
- ``train_rows(est, n_left)``: the training rows' gradients in blocks, to
  be contracted with ``n_left`` rows: factored
  (:class:`~skinfluence._scoring.FactoredRows`, GLMs), dense
  (:class:`~skinfluence._scoring.DenseRows`, torch) or, for wide networks,
  by forward-mode passes (:class:`~skinfluence._torch_path.DirectionalRows`);
- ``param_shifts``, ``self_influence``: parameter shifts and own-loss
  changes of given rows;
- ``perturbation``: Koh & Liang's I_pert,loss, where the family has it;
- ``check_group_removal``, ``group_newton``: the family's refusals of a
  group removal, and its Newton-corrected group estimate, where it has one
  (the first-order group sums come from the shared scoring module).

Each engine keeps its fitted state on the estimator (``_adapter``,
``_solver``, ...), so that a fitted estimator pickles as one object.
"""


from sklearn.base import clone
from sklearn.pipeline import Pipeline


def fit_clone(given, X, y, sample_weight):
    """A fitted clone of ``given``, the weights routed to a Pipeline's last step."""
    fitted = clone(given)
    fit_params = {}
    if sample_weight is not None:
        key = "sample_weight"
        if isinstance(fitted, Pipeline):
            key = f"{fitted.steps[-1][0]}__sample_weight"
        fit_params[key] = sample_weight
    return fitted.fit(X, y, **fit_params)


class Engine:
    """Base of the family engines; see the module docstring."""

    #: The family's name, for messages.
    family = ""

    def perturbation(self, est, X, y, top_k):
        raise ValueError(
            f"kind='perturbation' is not supported for {self.family} models; "
            "use kind='loss'."
        )

    def check_group_removal(self, est, masks, labels):
        """Refuse a group whose removal leaves the objective without a minimum."""

    def group_newton(self, est, X, y, masks, labels, n_steps):
        raise ValueError(
            f"estimate='newton' for groups applies to GLM families, not to "
            f"{self.family} models; use estimate='influence' (the sum of the "
            "rows' first-order influences)."
        )


def engine_for(model):
    """The engine of ``model``'s family (a torch model, or a GLM).

    Decided by the last step of a Pipeline (and the model a search refits):
    TorchModels, skorch nets and scikit-learn's MLPClassifier and
    MLPRegressor (through a torch replica, :mod:`skinfluence.models._mlp`)
    go to the torch engine, everything else to the GLM engine, which
    refuses what it does not support.
    """
    from ._torch_path import TorchEngine, is_torch_model
    from .models._pipeline import split_pipeline

    if is_torch_model(split_pipeline(model)[1]):
        return TorchEngine()
    from ._glm_path import GLMEngine

    return GLMEngine()
