"""cnf."""

from boltzflow.cnf.model import (  # noqa: F401
    ADAPTIVE_METHODS,
    FIXED_STEP_METHODS,
    VelocityField,
    flow_matching_loss,
    integrate,
    log_prob,
    sample_with_log_prob,
)

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_STEP_METHODS",
    "VelocityField",
    "flow_matching_loss",
    "integrate",
    "sample_with_log_prob",
    "log_prob",
]
