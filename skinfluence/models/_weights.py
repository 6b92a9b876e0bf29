"""Row factors that move when a row's weight changes.

Most objectives are sums, ``sum_j s_j l_j``, whose factors ``s_j`` are fixed:
leaving row j out only drops its own term. Two are not:

- ``class_weight="balanced"`` (:class:`BalancedWeights`): the factor of a
  class is ``N / (n_classes n_c)``, so leaving a row out re-balances every
  row of its class (and, through ``N``, of all classes);
- a mean over the sample weights (:class:`MeanWeights`), as scikit-learn's
  GLMs (PoissonRegressor, GammaRegressor, TweedieRegressor) and its l1 models
  (Lasso, ElasticNet) minimise: every factor is ``1 / sum(w)``, so leaving a
  row out scales all the others up, as if the penalty shrank.

Both share one interface: rows fall into ``n_groups`` groups (classes, or a
single group) whose factors move together. ``index(y_enc)`` names each row's
group; ``factors(y_enc, w)`` are the groups' factors on rows of weights w
(``base`` at the fitted weights); ``removal`` and ``derivative`` how they
move when row j is left out, or its weight lowered by ``eps * w_j``;
``ratios`` the factors of refits without given rows. Estimates and refits
treat the groups' gradient sums ``G[:, c]`` as extra directions of the
row's parameter shift (see ``GLMEngine._row_terms``).
"""

import numpy as np


class BalancedWeights:
    """How ``class_weight="balanced"`` moves when a row's weight changes.

    The factor of class c is ``N / (n_classes * n_c)`` with N the total and
    ``n_c`` the class's count (weighted by ``sample_weight`` where the
    estimator does so, as LogisticRegression and LinearSVC do; SGD counts
    rows). Removing row j (weight w_j, class c_j) multiplies every class-c
    row's factor by ``rho_c = (N - w_j) / N * n_c / (n_c - [c = c_j] w_j)``.
    """

    def __init__(self, counts, weighted):
        self.counts = counts
        self.total = counts.sum()
        self.weighted = weighted
        self.base = self.total / (len(counts) * counts)

    @property
    def n_groups(self):
        return len(self.counts)

    def index(self, y_enc):
        """Each row's group: its class."""
        return y_enc

    def _kept(self, w):
        return w if self.weighted else (w > 0).astype(np.float64)

    def factors(self, y_enc, w):
        """The class factors scikit-learn computes on rows of weights w."""
        counts = np.bincount(y_enc, weights=self._kept(w), minlength=self.n_groups)
        return counts.sum() / (self.n_groups * counts)

    def removal(self, y_enc, w):
        """``rho_c - 1`` for each row and class, and each row's own ``rho``."""
        w = w if self.weighted else np.ones_like(w)
        own = np.zeros((len(y_enc), self.n_groups))
        own[np.arange(len(y_enc)), y_enc] = w
        rho = ((self.total - w) / self.total)[:, None] * (
            self.counts / (self.counts - own))
        return rho - 1.0, rho[np.arange(len(y_enc)), y_enc]

    def derivative(self, y_enc, w):
        """``d rho_c / d eps`` when row j's weight is lowered by eps * w_j."""
        if not self.weighted:  # counts of rows do not move with weights
            return np.zeros((len(y_enc), self.n_groups))
        d = np.tile((-w / self.total)[:, None], (1, self.n_groups))
        d[np.arange(len(y_enc)), y_enc] += w / self.counts[y_enc]
        return d

    def ratios(self, y_enc, sw, rows, w_new):
        """Factor ratios (b, n_classes) of refits where ``sw[rows[i]]`` is
        ``w_new[i]``, against the fit on ``sw``."""
        b = len(rows)
        kept = self._kept(sw)
        counts = np.bincount(y_enc, weights=kept, minlength=self.n_groups)
        new = np.repeat(counts[None], b, axis=0)
        new[np.arange(b), y_enc[rows]] -= kept[rows] - self._kept(w_new)
        with np.errstate(divide="ignore", invalid="ignore"):
            factors = new.sum(axis=1, keepdims=True) / (self.n_groups * new)
        _refuse_empty(rows, factors, "leaves its class without weight, so "
                      "class_weight='balanced' is undefined without it")
        return factors / (counts.sum() / (self.n_groups * counts))


class MeanWeights:
    """A mean over the sample weights: every factor is ``1 / sum(w)``.

    scikit-learn's GLMs minimise ``sum_j (w_j / W) l_j + alpha/2 ||w||^2``
    with ``W = sum_j w_j``. Leaving row j out multiplies every other row's
    factor by ``rho = W / (W - w_j)``: one group, whose gradient sum is
    ``-Lambda theta`` at the optimum, so the row's parameter shift carries
    ``(w_j / W) H^-1 Lambda theta`` beside its own term.
    """

    n_groups = 1
    weighted = True

    def __init__(self, total):
        self.total = float(total)
        self.counts = np.array([self.total])
        self.base = np.array([1.0 / self.total])

    def index(self, y_enc):
        """Each row's group: the one group."""
        return np.zeros(len(y_enc), dtype=np.intp)

    def factors(self, y_enc, w):
        """The common factor ``1 / sum(w)``, as an array of one group."""
        return np.array([1.0 / np.sum(w)])

    def removal(self, y_enc, w):
        """Row j's removal as ``(delta (n, 1), own (n,))``, in penalty form.

        The objective without row j, multiplied by ``(W - w_j) / W`` (which
        keeps its minimiser), keeps every other row's factor and shrinks the
        penalty by ``w_j / W``: its gradient is the full one less row j's
        term less ``(w_j / W) Lambda theta = -(w_j / W) G``, so ``delta =
        w_j / W`` and the row's own factor is unchanged. Its Hessian differs
        from ``H - s_j D_j (x) z_j z_j'`` by ``(w_j / W) Lambda`` alone, which
        the Newton estimate neglects (it is exact for least squares without
        penalty); ``rho - 1 = w_j / (W - w_j)`` would neglect ``1/n`` of H.
        """
        return (w / self.total)[:, None], np.ones_like(w)

    def derivative(self, y_enc, w):
        """``d rho / d eps`` when row j's weight is lowered by eps * w_j."""
        return (w / self.total)[:, None]

    def ratios(self, y_enc, sw, rows, w_new):
        """Factor ratios (b, 1) of refits where ``sw[rows[i]]`` is ``w_new[i]``."""
        with np.errstate(divide="ignore"):
            factors = 1.0 / (self.total - sw[rows] + w_new)[:, None]
        _refuse_empty(rows, factors, "leaves no weight in the training set")
        return factors / self.base


def _refuse_empty(rows, factors, why):
    bad = ~np.all(np.isfinite(factors) & (factors > 0), axis=1)
    if np.any(bad):
        raise ValueError(f"Leaving out training row {rows[np.flatnonzero(bad)[0]]} "
                         f"{why}.")
