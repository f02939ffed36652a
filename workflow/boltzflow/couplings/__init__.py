"""Regression pairs ``(x0, x1)`` for RegFlow (arXiv 2506.01158): exact optimal-transport
couplings between two point sets (:mod:`~boltzflow.couplings.ot`) and reflow pairs pushed through a
trained CNF (:mod:`~boltzflow.couplings.reflow`)."""

from boltzflow.couplings.ot import as_points, ot_pairs, ot_permutation  # noqa: F401
from boltzflow.couplings.reflow import cnf_pairs  # noqa: F401

__all__ = [
    "as_points",
    "ot_permutation",
    "ot_pairs",
    "cnf_pairs",
]
