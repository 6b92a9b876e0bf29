"""What every inverse-Hessian solver provides."""


class Solver:
    """Solve ``(H + damping I) X = B`` for batches of right-hand sides.

    ``fit(H, null_space=None)`` prepares the solver; ``solve(B)`` takes B of
    shape (n_params, k) and returns X of the same shape; ``info_`` records
    what was done.  Solvers never see models or data, only the operator.
    """

    def __init__(self, *, damping=0.0):
        self.damping = damping
