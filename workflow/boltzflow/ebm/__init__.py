"""flowMC-EBM: an energy-based model trained jointly with a normalising flow that drives its MCMC
(Grenioux, Moulines, Gabrie, "Balanced training of energy-based models with adaptive flow
sampling", arXiv 2306.00684), with the ULA-EBM baseline. :mod:`~boltzflow.ebm.model` holds the
tilted EBM, :mod:`~boltzflow.ebm.train` its training, :mod:`~boltzflow.ebm.evaluate` the paper's
metrics, :mod:`~boltzflow.ebm.data` the datasets and :mod:`~boltzflow.ebm.run` one run of the
workflow (rules ``train_ebm``, ``evaluate_ebm``) and its command line.
"""

from boltzflow.ebm.data import Dataset, known_dataset_names, load_dataset
from boltzflow.ebm.evaluate import evaluate_ebm, late_training_mse
from boltzflow.ebm.model import (
    EnergyNet,
    TiltedEBM,
    build_ebm,
    ebm_mode_weights,
    grid_log_density,
    load_ebm_model,
    save_ebm_model,
)
from boltzflow.ebm.run import (
    METHOD_DEFAULTS,
    RunConfig,
    check_overrides,
    ebm_section,
    evaluate_run,
    main,
    resolve_run,
    train_run,
)
from boltzflow.ebm.train import CHECKPOINT_NAME, METHODS, EBMSettings, ebm_sampler, mode_row, step_generator, train_ebm

__all__ = [
    "METHODS",
    "CHECKPOINT_NAME",
    "EnergyNet",
    "TiltedEBM",
    "build_ebm",
    "EBMSettings",
    "ebm_sampler",
    "step_generator",
    "mode_row",
    "save_ebm_model",
    "load_ebm_model",
    "grid_log_density",
    "ebm_mode_weights",
    "train_ebm",
    "evaluate_ebm",
    "late_training_mse",
    "METHOD_DEFAULTS",
    "RunConfig",
    "check_overrides",
    "resolve_run",
    "Dataset",
    "known_dataset_names",
    "load_dataset",
    "train_run",
    "evaluate_run",
    "ebm_section",
    "main",
]
