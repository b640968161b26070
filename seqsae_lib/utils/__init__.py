"""Utilities every layer may use: argument checks, torch helpers, file pairs, runtime settings, key figures.

Introduced in chapter 1.
"""

from seqsae_lib.utils.checks import check_choice, check_float, check_int, latent_ids
from seqsae_lib.utils.reporting import KeyFigureMismatchError, key_figures, wrap_text
from seqsae_lib.utils.runtime import resolve_device, set_seed, set_threads
from seqsae_lib.utils.torchutils import eval_mode

__all__ = [
    "KeyFigureMismatchError", "check_choice", "check_float", "check_int", "eval_mode", "key_figures", "latent_ids",
    "resolve_device", "set_seed", "set_threads", "wrap_text",
]
