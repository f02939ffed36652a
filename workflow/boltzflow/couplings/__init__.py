"""couplings."""

from boltzflow.couplings.ot import (  # noqa: F401
    cnf_pairs,
    ot_pairs,
    ot_permutation,
)

__all__ = [
    "ot_permutation",
    "ot_pairs",
    "cnf_pairs",
]
