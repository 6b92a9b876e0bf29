"""Inverse-Hessian solvers."""

from ._direct import DirectSolver

#: Largest parameter count that "auto" factorises directly.
DIRECT_MAX_PARAMS = 5000


def resolve_method(method, n_params):
    """The solver ``method="auto"`` stands for at this size."""
    if method != "auto":
        return method
    # Iterative solvers arrive with the scale work; until then "auto" is direct.
    return "direct"


def make_solver(method, *, damping=0.0):
    """Build an unfitted solver for a resolved method name."""
    if method == "direct":
        return DirectSolver(damping=damping)
    raise NotImplementedError(
        f"method={method!r} is not available yet for this model; use "
        "method='direct' (or 'auto')."
    )


__all__ = ["DIRECT_MAX_PARAMS", "DirectSolver", "make_solver", "resolve_method"]
