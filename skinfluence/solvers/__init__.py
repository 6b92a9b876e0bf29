"""Inverse-Hessian solvers: direct (primal or dual), cg, lissa, arnoldi."""

from numbers import Integral, Real

from ..utils._compat import (
    HasMethods,
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from ._arnoldi import ArnoldiSolver
from ._base import HessianOperator, Solver, not_pd_error
from ._cg import CGSolver
from ._choice import DIRECT_MAX_PARAMS, choose, memory_budget
from ._direct import DirectSolver
from ._dual import DualSolver, GramStructure
from ._lissa import LiSSASolver


def resolve_method(method, n_params):
    """The solver ``method="auto"`` stands for on a model known by products.

    For torch models, whose dense Hessian takes one product per parameter;
    GLMs choose by cost and memory (:func:`choose`).
    """
    if method != "auto":
        return method
    return "direct" if n_params <= DIRECT_MAX_PARAMS else "cg"


def make_solver(method, *, damping=0.0, tol=1e-8, random_state=None,
                solver_params=None, n_threads=1, form="primal", hint=""):
    """Build an unfitted solver for a resolved method name.

    ``solver_params`` holds the method's own settings: CG's ``max_iter`` and
    ``preconditioner``;
    LiSSA's ``scale``, ``depth``, ``repeats``, ``batch_size``; Arnoldi's
    ``rank``. ``n_threads`` is for CG's vector updates. ``form`` is the
    direct solver's: "primal" (Cholesky of H) or "dual" (of the kernel).
    ``tol`` is the largest relative residual cg, lissa and arnoldi accept
    without a warning; ``hint`` is appended to the error for a Hessian that
    is not positive definite.
    """
    params = dict(solver_params or {})
    if method == "direct":
        solver = (DualSolver if form == "dual" else DirectSolver)(damping=damping)
    elif method == "cg":
        # "auto": Nyström (pivoted on the largest diagonal) on large GLM
        # operators, Jacobi below; the seed only matters for torch sketches.
        solver = CGSolver(damping=damping, tol=tol, n_threads=n_threads,
                          preconditioner="auto",
                          random_state=0 if random_state is None else random_state)
    elif method == "lissa":
        solver = LiSSASolver(damping=damping, tol=tol, random_state=random_state)
    elif method == "arnoldi":
        solver = ArnoldiSolver(damping=damping, tol=tol, random_state=random_state)
    else:
        raise ValueError(f"Unknown method {method!r}.")
    allowed = SOLVER_PARAMS.get(method, {})
    unknown = set(params) - set(allowed)
    if unknown:
        raise ValueError(
            f"solver_params {sorted(unknown)} do not apply to method={method!r}; "
            f"it takes {sorted(allowed) or 'none'}."
        )
    # Key, type and range, as scikit-learn validates an estimator's params.
    validate_parameter_constraints(
        allowed, params, caller_name=f"solver_params of method={method!r}")
    params.pop("form", None)  # the direct solver's form, chosen by the caller
    for key, value in params.items():
        setattr(solver, key, value)
    solver.hint = hint
    return solver


_POSITIVE_INT = Interval(Integral, 1, None, closed="left")

#: What ``solver_params`` each method takes, with their allowed values.
SOLVER_PARAMS = {
    "direct": {"form": [StrOptions({"primal", "dual"}), None]},
    "cg": {
        "max_iter": [_POSITIVE_INT, None],
        "preconditioner": [StrOptions({"auto", "jacobi", "nystrom", "ekfac"}),
                           HasMethods(["solve"]), None],
        "rank": [_POSITIVE_INT, None],
        "block": [StrOptions({"auto"}), "boolean"],
    },
    "lissa": {
        "scale": [Interval(Real, 0, None, closed="neither"), None],
        "depth": [_POSITIVE_INT],
        "repeats": [_POSITIVE_INT],
        "batch_size": [_POSITIVE_INT, None],
    },
    "arnoldi": {"rank": [_POSITIVE_INT]},
}


__all__ = ["DIRECT_MAX_PARAMS", "ArnoldiSolver", "CGSolver", "DirectSolver",
           "DualSolver", "GramStructure", "HessianOperator", "LiSSASolver",
           "Solver", "choose", "make_solver", "memory_budget", "not_pd_error",
           "resolve_method"]
