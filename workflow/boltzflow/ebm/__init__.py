"""flowMC-EBM: an energy-based model trained jointly with a normalising flow that drives its MCMC
(Grenioux, Moulines, Gabrie, "Balanced training of energy-based models with adaptive flow
sampling", arXiv 2306.00684), with the ULA-EBM baseline. :mod:`~boltzflow.ebm.model` holds the
tilted EBM, :mod:`~boltzflow.ebm.train` its training, :mod:`~boltzflow.ebm.evaluate` the paper's
metrics, :mod:`~boltzflow.ebm.data` the datasets, :mod:`~boltzflow.ebm.settings` a run's settings (checked
without torch) and :mod:`~boltzflow.ebm.run` one run of the
workflow (rules ``train_ebm``, ``evaluate_ebm``) and its command line.
"""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "data": ["Dataset", "load_dataset"],
    "evaluate": ["evaluate_ebm", "late_training_mse"],
    "model": [
        "EnergyNet", "TiltedEBM", "build_ebm", "ebm_mode_weights", "grid_log_density", "load_ebm_model",
        "save_ebm_model",
    ],
    "run": ["ebm_section", "evaluate_run", "main", "train_run"],
    "settings": [
        "METHODS", "METHOD_DEFAULTS", "EBMSettings", "RunConfig", "check_ebm_section", "check_overrides",
        "known_dataset_names", "resolve_run",
    ],
    "train": [
        "CHECKPOINT_NAME", "ebm_sampler", "mode_row", "step_generator",
        "train_ebm",
    ],
})
