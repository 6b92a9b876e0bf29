"""Displays of influence, in scikit-learn's Display pattern.

Each Display stores the arrays it draws (``__init__``), draws them
(``plot(ax=None, ...)``, which sets ``ax_``/``axes_``, ``figure_`` and the
artists, and returns the Display), and is built either from an
:class:`~skinfluence.InfluenceEstimator` (``from_estimator``: computes, then
calls ``from_predictions``) or from influence scores already computed
(``from_predictions``: builds and plots).

matplotlib is an optional dependency (``pip install skinfluence[plot]``):
it is imported inside the methods that draw, so this module imports without
it.
"""

from ._influence_scatter import InfluenceScatterDisplay
from ._loo_agreement import LOOAgreementDisplay
from ._top_influence import TopInfluenceDisplay

__all__ = ["InfluenceScatterDisplay", "LOOAgreementDisplay", "TopInfluenceDisplay"]
