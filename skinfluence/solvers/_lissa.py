"""LiSSA: the stochastic Neumann series of Agarwal, Bullins & Hazan (2017)."""

import numpy as np
from sklearn.utils import check_random_state

from ..utils._array import is_torch, like, namespace, to_numpy
from ._base import Solver, not_pd_error


def _norm(a):
    """Frobenius norm of a NumPy array or torch tensor, as a float."""
    return float(namespace(a).linalg.vector_norm(a))


def top_eigenvalue(op, rng, n_iter=30):
    """Largest eigenvalue of a PSD operator by power iteration (a bound above)."""
    v = rng.standard_normal((op.n_params, 1))
    if op.template is not None:
        v = like(v, op.template)
    v /= _norm(v)
    lam = 0.0
    for _ in range(n_iter):
        w = op.matmat(v)
        lam = _norm(w)
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

    The mini-batches are drawn from a seed fixed at ``fit``, the same at
    every solve: a fitted solver is one linear map, so repeated calls, and
    solving columns together or apart, give the same answer. Every solve
    certifies itself by the true relative residual of its answer (one more
    Hessian product), and warns above ``tol``.

    Parameters
    ----------
    damping : float, default=0.0
    scale : float, default=None
        Must exceed the largest eigenvalue of ``H + damping I``; by default
        1.1 times a power-iteration estimate of it.
    depth : int, default=1000
    repeats : int, default=1
    batch_size : int, default=None
    tol : float, default=1e-8
        Largest true relative residual accepted without a warning.
    random_state : int, RandomState instance or None, default=None
    """

    def __init__(self, *, damping=0.0, scale=None, depth=1000, repeats=1,
                 batch_size=None, tol=1e-8, random_state=None):
        super().__init__(damping=damping)
        self.scale = scale
        self.depth = depth
        self.repeats = repeats
        self.batch_size = batch_size
        self.tol = tol
        self.random_state = random_state

    def fit(self, H, null_space=None):
        self.op_ = self._operator(H)
        self.null_space_ = null_space
        rng = check_random_state(self.random_state)
        scale = self.scale
        if scale is None:
            scale = 1.1 * (top_eigenvalue(self.op_, rng) + self.damping)
        self.scale_ = float(scale)
        self.seed_ = int(rng.randint(np.iinfo(np.int32).max))
        self.info_ = {"method": "lissa", "n_params": self.op_.n_params,
                      "damping": self.damping, "scale": self.scale_,
                      "depth": self.depth, "repeats": self.repeats,
                      "batch_size": self.batch_size, "tol": self.tol,
                      "n_solves": 0}
        return self

    def _divergence(self, X, step):
        """Why the series diverged: an eigenvalue of ``A = H + damping I``
        outside ``(0, 2 scale)``. Power iteration on the series' own map
        ``I - A / scale`` from the largest iterate isolates the diverging
        direction, whose Rayleigh quotient tells which end.
        """
        col = np.argmax(to_numpy(namespace(X).linalg.vector_norm(X, axis=0)))
        v = X[:, int(col)][:, None]
        curvature = np.nan
        for _ in range(30):
            norm = _norm(v)
            if not np.isfinite(norm) or norm == 0:
                break
            v = v / norm
            Av = self.op_.matmat(v) + self.damping * v
            curvature = float((v.T @ Av).item())
            v = v - Av / self.scale_
        if curvature <= 0:
            return not_pd_error(curvature, self.damping,
                                where=f"along LiSSA's diverging iterate (step {step})",
                                hint=self.hint)
        return ValueError(
            f"LiSSA diverged at step {step}: scale={self.scale_:.3g} is below "
            "half the largest eigenvalue of the damped Hessian. Raise scale "
            "(solver_params={'scale': ...}) or leave it to the default estimate."
        )

    def _product(self, X, rng):
        if self.batch_size is not None and self.op_.sample is not None:
            return self.op_.sample(rng, self.batch_size)(X)
        return self.op_.matmat(X)

    def solve(self, B):
        """Solutions of ``(H + damping I) X = B`` for B of shape (n_params, k),
        in the operator's arrays (torch tensors on a torch model's device)."""
        template = self.op_.template
        if template is not None and not is_torch(B):
            return to_numpy(self.solve(like(B, template)))
        if template is None:
            B = np.asarray(B, dtype=np.float64)
        squeeze = B.ndim == 1
        B = self._project(B.reshape(B.shape[0], -1))
        b_norm = _norm(B)
        rng = np.random.RandomState(self.seed_)
        total = namespace(B).zeros_like(B)
        # X <- B + X - (H X + damping X) / scale, in place but for H X:
        # X (1 - damping / scale) + B - H X / scale.
        keep = 1.0 - self.damping / self.scale_
        for _ in range(self.repeats):
            X = B + 0.0  # a copy, in either library
            for step in range(self.depth):
                HX = self._product(X, rng)
                X *= keep
                X += B
                X -= HX / self.scale_
                # While the series contracts, |X| <= (step + 1) |B|.
                if step % 10 == 0 and not _norm(X) <= 2 * (step + 2) * b_norm:
                    raise self._divergence(X, step)
            total += X
        X = self._project(total / (self.repeats * self.scale_))
        rel, _ = self._residuals(X, B)
        what = ("mini-batch noise and " if self.batch_size is not None else "")
        self._certify(
            rel,
            f"LiSSA's error comes from {what}the series' truncation, which "
            f"shrinks like (1 - lambda_min / scale) ** depth: raise depth "
            f"(now {self.depth}){' or batch_size' if what else ''}, set "
            "damping > 0, or use method='cg' or 'direct'; loosen tol if this "
            "accuracy is enough.",
        )
        return X[:, 0] if squeeze else X
