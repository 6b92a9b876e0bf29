"""Inverse-Hessian solvers: direct, cg, lissa, arnoldi."""

from ._arnoldi import ArnoldiSolver
from ._base import HessianOperator, Solver
from ._cg import CGSolver
from ._direct import DirectSolver
from ._lissa import LiSSASolver

#: Largest parameter count that "auto" factorises directly (a dense
#: 5000 x 5000 Hessian is 200 MB and factorises in about a second).
DIRECT_MAX_PARAMS = 5000


def resolve_method(method, n_params):
    """The solver ``method="auto"`` stands for at this size."""
    if method != "auto":
        return method
    return "direct" if n_params <= DIRECT_MAX_PARAMS else "cg"


def make_solver(method, *, damping=0.0, tol=1e-8, random_state=None,
                solver_params=None, n_threads=1):
    """Build an unfitted solver for a resolved method name.

    ``solver_params`` holds the method's own settings: CG's ``max_iter`` and
    ``preconditioner``;
    LiSSA's ``scale``, ``depth``, ``repeats``, ``batch_size``; Arnoldi's
    ``rank``. ``n_threads`` is for CG's vector updates.
    """
    params = dict(solver_params or {})
    if method == "direct":
        solver = DirectSolver(damping=damping)
    elif method == "cg":
        solver = CGSolver(damping=damping, tol=tol, n_threads=n_threads)
    elif method == "lissa":
        solver = LiSSASolver(damping=damping, random_state=random_state)
    elif method == "arnoldi":
        solver = ArnoldiSolver(damping=damping, random_state=random_state)
    else:
        raise ValueError(f"Unknown method {method!r}.")
    allowed = {"cg": {"max_iter", "preconditioner"},
               "lissa": {"scale", "depth", "repeats", "batch_size"},
               "arnoldi": {"rank"}}.get(method, set())
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(
            f"solver_params {sorted(unknown)} do not apply to method={method!r}; "
            f"it takes {sorted(allowed) or 'none'}."
        )
    for key, value in params.items():
        setattr(solver, key, value)
    return solver


__all__ = ["DIRECT_MAX_PARAMS", "ArnoldiSolver", "CGSolver", "DirectSolver",
           "HessianOperator", "LiSSASolver", "Solver", "make_solver",
           "resolve_method"]
