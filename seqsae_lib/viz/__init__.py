"""Views: matplotlib figures (:mod:`~seqsae_lib.viz.plots`, :mod:`~seqsae_lib.viz.fairness`) and the optional
ipywidgets (:mod:`~seqsae_lib.viz.widgets`, imported only when ``sl.widgets`` is first used).

Introduced in chapter 1.
"""

from seqsae_lib.viz import fairness, plots
from seqsae_lib.viz.fairness import *  # noqa: F403 (the fairness figures' public names, listed in their __all__)
from seqsae_lib.viz.plots import *  # noqa: F403 (the plots' public names, listed in their __all__)

__all__ = [*plots.__all__, *fairness.__all__]
