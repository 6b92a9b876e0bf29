"""Direct solver: one Cholesky factorisation of the dense Hessian."""

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve, eigvalsh

from ._base import HessianOperator, Solver


def _not_pd_message(H, null_space, damping):
    if null_space is not None:
        # Restrict to the orthogonal complement of the known null space.
        Q, _ = np.linalg.qr(null_space, mode="complete")
        comp = Q[:, null_space.shape[1]:]
        H = comp.T @ H @ comp
        where = " on the identifiable subspace"
    else:
        where = ""
    smallest = eigvalsh(H, subset_by_index=[0, 0])[0] if H.size else 0.0
    suggestion = max(1e-6, 10 * abs(smallest))
    return (
        f"Hessian is not positive definite (smallest eigenvalue {smallest:.3g}"
        f"{where}, damping={damping:g}); the model is not identifiable from "
        f"the training data (collinear features, or no regularisation). Set "
        f"damping > 0, e.g. damping={suggestion:.1g}."
    )


class DirectSolver(Solver):
    """Cholesky of ``H + damping I``.

    Where the model has a null direction that its objective cannot see
    (softmax intercepts without penalty), the Cholesky is taken of
    ``H + c N N'`` with N an orthonormal basis of that direction: for any
    right-hand side orthogonal to N, as every gradient is, this returns the
    pseudo-inverse solution on the identifiable subspace, without damping.
    """

    def fit(self, H, null_space=None):
        if isinstance(H, HessianOperator):  # small problems only
            H = H.matmat(np.eye(H.n_params))
        H = np.array(H, dtype=np.float64)
        n = H.shape[0]
        H[np.diag_indices(n)] += self.damping
        self.null_space_ = null_space
        A = H
        if null_space is not None:
            c = max(1.0, float(np.mean(np.diag(H))))
            A = H + c * (null_space @ null_space.T)
        # Cholesky succeeds on some matrices that are singular to machine
        # precision; a tiny relative pivot is treated as a failure too.
        try:
            self.factor_ = cho_factor(A, lower=False, check_finite=True)
            pivots = np.abs(np.diag(self.factor_[0])) ** 2
            if n and pivots.min() <= 1e-13 * max(pivots.max(), 1e-300):
                raise LinAlgError("near-singular pivot")
        except (LinAlgError, ValueError) as exc:
            raise ValueError(
                _not_pd_message(H, null_space, self.damping)
            ) from exc
        self.info_ = {
            "method": "direct",
            "n_params": n,
            "damping": self.damping,
            "null_space_dim": 0 if null_space is None else null_space.shape[1],
            "min_pivot": float(np.sqrt(pivots.min())) if n else 0.0,
        }
        return self

    def solve(self, B):
        X = cho_solve(self.factor_, B, check_finite=False)
        if self.null_space_ is not None:
            N = self.null_space_
            X = X - N @ (N.T @ X)
        return X

    def inverse(self):
        """Dense ``H^-1`` (pseudo-inverse on the identifiable subspace), cached."""
        if getattr(self, "_inverse", None) is None:
            self._inverse = self.solve(np.eye(self.factor_[0].shape[0]))
        return self._inverse
