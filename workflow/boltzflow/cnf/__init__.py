"""Flow-matching continuous normalizing flows: the velocity field (:mod:`~boltzflow.cnf.model`),
the flow-matching loss (:mod:`~boltzflow.cnf.training`), ODE integration with or without the exact
log-density (:mod:`~boltzflow.cnf.sampling`) and checkpoints (:mod:`~boltzflow.cnf.io`); used as
reflow teachers for RegFlow and as baseline Boltzmann generators."""

from boltzflow.cnf.io import load_cnf, save_cnf  # noqa: F401
from boltzflow.cnf.model import VelocityField  # noqa: F401
from boltzflow.cnf.sampling import (  # noqa: F401
    ADAPTIVE_METHODS,
    FIXED_STEP_METHODS,
    CNFSampler,
    integrate,
    log_prob,
    sample_with_log_prob,
)
from boltzflow.cnf.training import flow_matching_loss  # noqa: F401

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_STEP_METHODS",
    "CNFSampler",
    "VelocityField",
    "flow_matching_loss",
    "integrate",
    "sample_with_log_prob",
    "log_prob",
    "save_cnf",
    "load_cnf",
]
