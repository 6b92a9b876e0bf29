"""What every inverse-Hessian solver provides, and the operator it sees."""

import functools
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..utils._array import is_torch, like, namespace, to_numpy


class HessianOperator:
    """A symmetric positive semi-definite operator known by its products.

    Parameters
    ----------
    n_params : int
        Size of the operator.
    matmat : callable
        ``matmat(V)`` returns ``H @ V`` for V of shape (n_params, k).
    diagonal : ndarray of shape (n_params,), default=None
        ``diag(H)``, for preconditioning.
    sample : callable, default=None
        ``sample(rng)`` returns a ``matmat`` of an unbiased estimate of H on
        a random mini-batch of rows, for stochastic solvers.
    gram : GramStructure, default=None
        The GLM form ``Λ + Ψᵀ D Ψ`` of H, for the dual direct solve and the
        cost-based choice of solver.
    template : torch.Tensor, default=None
        For an operator on torch tensors (torch models), an empty tensor of
        their dtype and device: ``matmat`` then takes and returns such
        tensors, and the solvers keep their iterates there. None: NumPy.
    columnwise : bool, default=False
        A different operator per right-hand side (a family of Hessians, one
        per column of B): ``matmat(V, cols)`` then applies to column i of V
        the operator of right-hand side ``cols[i]``. Only the per-column
        CG recursion takes such operators.
    """

    def __init__(self, n_params, matmat, *, diagonal=None, sample=None, gram=None,
                 template=None, columnwise=False):
        self.n_params = n_params
        self.matmat = matmat
        self.diagonal = diagonal
        self.sample = sample
        self.gram = gram
        self.template = template
        self.columnwise = columnwise

    @classmethod
    def from_dense(cls, H):
        if is_torch(H):
            import torch

            return cls(H.shape[0], functools.partial(torch.matmul, H),
                       template=H.new_empty(0))
        H = np.asarray(H)
        return cls(H.shape[0], functools.partial(np.matmul, H),
                   diagonal=np.diag(H).copy())

    def host(self):
        """This operator on float64 NumPy arrays: itself, or a torch operator
        whose products are moved to the host (for ARPACK and the per-column
        CG recursion, which run in NumPy)."""
        if self.template is None:
            return self
        return HessianOperator(self.n_params, _OnHost(self.matmat, self.template),
                               diagonal=self.diagonal)


class _OnHost:
    """``matmat`` of a torch operator taking and returning NumPy arrays."""

    def __init__(self, matmat, template):
        self.matmat, self.template = matmat, template

    def __call__(self, V):
        return to_numpy(self.matmat(like(V, self.template)))


class Solver:
    """Solve ``(H + damping I) X = B`` for batches of right-hand sides.

    ``fit(H, null_space=None)`` prepares the solver, H a dense array or a
    :class:`HessianOperator`; ``solve(B)`` takes B of shape (n_params, k) and
    returns X of the same shape; ``info_`` records what was done. Solvers
    never see models or data, only the operator.
    """

    #: Advice appended to the error for a Hessian that is not positive
    #: definite, from the model family (torch: fit with curvature="ggn").
    hint = ""

    def __init__(self, *, damping=0.0):
        self.damping = damping

    def _operator(self, H):
        return H if isinstance(H, HessianOperator) else HessianOperator.from_dense(H)

    def _project(self, X):
        N = getattr(self, "null_space_", None)
        return X if N is None else X - N @ (N.T @ X)

    def _apply(self, X, cols=None):
        """``(H + damping I) X`` with the fitted operator (``cols``: the
        right-hand sides X's columns belong to, for a columnwise operator)."""
        if self.op_.columnwise:
            AX = self.op_.matmat(X, np.arange(X.shape[1]) if cols is None else cols)
        else:
            AX = self.op_.matmat(X)
        if not is_torch(AX):
            AX = np.asarray(AX, dtype=np.float64)
        if self.damping:
            AX += self.damping * X  # matmat returns a new array
        return AX

    def _residuals(self, X, B, AX=None, cols=None):
        """True relative residuals ``||(H + damping I) x - b|| / ||b||``, per column.

        One Hessian product (unless ``AX`` is given). A zero right-hand side
        has residual ``||A x||``; a non-finite solution, ``inf``. The
        residuals come back as a NumPy vector, R in the arrays' library.
        """
        R = (self._apply(X, cols) if AX is None else AX) - B
        norm = namespace(R).linalg.vector_norm
        b = to_numpy(norm(B, axis=0))
        rel = to_numpy(norm(R, axis=0)) / np.where(b > 0, b, 1.0)
        return np.where(np.isfinite(rel), rel, np.inf), R

    def _non_finite(self):
        return ValueError(
            f"{self.info_['method']} returned non-finite values (NaN or "
            "infinity); the damped Hessian or the right-hand sides are not "
            "finite, or the solver diverged. Check the model's parameters, "
            "set damping > 0 or use method='direct'."
        )

    def _certify(self, rel, advice, **record):
        """Record the last solve and warn if it is not within ``tol``.

        ``rel`` holds the true relative residuals of its columns;
        ``record`` further figures of this solve. The record is the last
        solve's (``residual``: its largest relative residual), plus running
        totals: ``solver_info_`` stays bounded however often it is called.
        """
        if not np.all(np.isfinite(rel)):
            raise self._non_finite()
        worst = float(rel.max()) if rel.size else 0.0
        info = self.info_
        info["n_solves"] = info.get("n_solves", 0) + rel.size
        info["residual"] = worst
        info["max_residual"] = max(info.get("max_residual", 0.0), worst)
        info.update(record)
        bad = int(np.count_nonzero(~(rel <= self.tol)))
        if bad:
            name = info["method"]
            warnings.warn(
                f"{name} did not reach tol={self.tol:g}: {bad} of {rel.size} "
                f"solutions have a true relative residual "
                f"||(H + damping I) x - b|| / ||b|| above it (largest "
                f"{worst:.3g}), so their influence is not exact to tol. "
                f"{advice}",
                ConvergenceWarning,
                stacklevel=4,
            )
        return worst


def not_pd_error(curvature, damping, *, where="along a search direction",
                 hint=""):
    """The error for a Hessian found not positive definite by its products.

    ``curvature`` is a Rayleigh quotient ``v'(H + damping I)v / v'v <= 0``
    met ``where``: it bounds the smallest eigenvalue from above, so damping
    must exceed ``damping - curvature`` at least.
    """
    need = damping - curvature
    suggestion = max(1e-6, 10 * need)
    return ValueError(
        f"Hessian is not positive definite: curvature {curvature:.3g} {where}, "
        f"with damping={damping:g}. The fitted parameters are not a minimum "
        "of the training objective (an untrained or unconverged model, or one "
        "not identifiable from its data), so H^-1 does not exist there. Set "
        f"damping > {need:.3g} at least (the smallest eigenvalue may be lower "
        f"still), e.g. damping={suggestion:.1g}{hint}."
    )
