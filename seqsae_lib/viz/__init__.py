"""Views: matplotlib figures (:mod:`~seqsae_lib.viz.plots`) and the optional ipywidgets
(:mod:`~seqsae_lib.viz.widgets`, imported only when ``sl.widgets`` is first used).

Introduced in chapter 1.
"""

from seqsae_lib.viz.plots import *  # noqa: F403 (the plots' public names, listed in their __all__)
from seqsae_lib.viz.plots import __all__  # noqa: F401
