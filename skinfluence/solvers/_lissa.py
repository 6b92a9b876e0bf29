"""LiSSA: the stochastic Neumann series of Agarwal, Bullins & Hazan (2017)."""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._base import Solver


def top_eigenvalue(op, rng, n_iter=30):
    """Largest eigenvalue of a PSD operator by power iteration (a bound above)."""
    v = rng.standard_normal((op.n_params, 1))
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(n_iter):
        w = op.matmat(v)
        lam = float(np.linalg.norm(w))
        if lam == 0:
            return 0.0
        v = w / lam
    return lam


class LiSSASolver(Solver):
    """``(H + damping I)^-1 B`` by ``X <- B + X - (H + damping I) X / scale``.

    After ``depth`` steps ``X / scale`` approximates the solution, with error
    shrinking like ``(1 - lambda_min / scale) ** depth``; ``repeats``
    independent runs are averaged. With ``batch_size`` each step uses the
    Hessian of a random mini-batch of rows (the stochastic estimator of the
    paper); without it every step uses the full Hessian product, and the
    series is deterministic.

    Parameters
    ----------
    damping : float, default=0.0
    scale : float, default=None
        Must exceed the largest eigenvalue of ``H + damping I``; by default
        1.1 times a power-iteration estimate of it.
    depth : int, default=1000
    repeats : int, default=1
    batch_size : int, default=None
    random_state : int, RandomState instance or None, default=None
    """

    def __init__(self, *, damping=0.0, scale=None, depth=1000, repeats=1,
                 batch_size=None, random_state=None):
        super().__init__(damping=damping)
        self.scale = scale
        self.depth = depth
        self.repeats = repeats
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, H, null_space=None):
        self.op_ = self._operator(H)
        self.null_space_ = null_space
        self.rng_ = check_random_state(self.random_state)
        scale = self.scale
        if scale is None:
            scale = 1.1 * (top_eigenvalue(self.op_, self.rng_) + self.damping)
        self.scale_ = float(scale)
        self.info_ = {"method": "lissa", "n_params": self.op_.n_params,
                      "damping": self.damping, "scale": self.scale_,
                      "depth": self.depth, "repeats": self.repeats,
                      "batch_size": self.batch_size, "residuals": []}
        return self

    def _product(self, X):
        if self.batch_size is not None and self.op_.sample is not None:
            return self.op_.sample(self.rng_, self.batch_size)(X)
        return self.op_.matmat(X)

    def solve(self, B):
        B = self._project(np.asarray(B, dtype=np.float64).reshape(B.shape[0], -1))
        b_norm = np.linalg.norm(B)
        total = np.zeros_like(B)
        for _ in range(self.repeats):
            X = B.copy()
            for step in range(self.depth):
                X = B + X - (self._product(X) + self.damping * X) / self.scale_
                # While the series contracts, |X| <= (step + 1) |B|.
                if step % 10 == 0 and not np.linalg.norm(X) <= 2 * (step + 2) * b_norm:
                    raise ValueError(
                        f"LiSSA diverged at step {step}: scale={self.scale_:.3g} "
                        "is below the largest eigenvalue of the damped Hessian. "
                        "Raise scale (solver_params={'scale': ...}) or leave it "
                        "to the default estimate."
                    )
            total += X
        X = self._project(total / (self.repeats * self.scale_))
        residual = self.op_.matmat(X) + self.damping * X - B
        b_norm = np.maximum(np.linalg.norm(B, axis=0), np.finfo(float).tiny)
        worst = float(np.max(np.linalg.norm(residual, axis=0) / b_norm))
        self.info_["residuals"].append(worst)
        if worst > 0.1:
            warnings.warn(
                f"LiSSA stopped far from the solution: largest relative residual "
                f"{worst:.3g} after depth={self.depth}. Raise depth or damping "
                "(the error shrinks like (1 - lambda_min / scale) ** depth).",
                ConvergenceWarning,
                stacklevel=3,
            )
        return X
