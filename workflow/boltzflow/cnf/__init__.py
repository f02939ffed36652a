"""Flow-matching continuous normalizing flows: the velocity field (:mod:`~boltzflow.cnf.model`),
the flow-matching loss (:mod:`~boltzflow.cnf.training`), ODE integration with or without the exact
log-density (:mod:`~boltzflow.cnf.sampling`) and checkpoints (:mod:`~boltzflow.cnf.io`); used as
reflow teachers for RegFlow and as baseline Boltzmann generators."""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "io": ["load_cnf", "save_cnf"],
    "model": ["VelocityField"],
    "sampling": [
        "ADAPTIVE_METHODS", "FIXED_STEP_METHODS", "CNFSampler", "integrate", "log_prob",
        "sample_with_log_prob",
    ],
    "training": ["flow_matching_loss"],
})
