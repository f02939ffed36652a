"""The cross-method comparison: every sampler on the same targets, at ladders of energy-call
budgets, scored by one function (:func:`boltzflow.evaluation.score_sample_set`)."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "experiment": ["REFERENCE_SEED_OFFSET", "exact_floor", "reference_set", "score_run"],
    "runs": ["ShootoutRun", "diffusion_settings", "run_diffusion", "run_flow", "run_flowmc", "run_method",
             "run_pt"],
    "settings": ["DIFFUSION_METHODS", "FLOW_METHODS", "METHODS", "METHOD_SECTIONS", "STRUCTURED_METHODS", "check_shootout",
                 "shootout_runs", "shootout_settings"],
})
