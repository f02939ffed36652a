"""fep."""

from boltzflow.fep.run import (  # noqa: F401
    DEFAULT_STATE_A,
    DEFAULT_STATE_B,
    EnergyFn,
    IndicatorFn,
    StateBox,
    StateDefinition,
    TFEPRun,
    TFEPWork,
    fit_state_map,
    md_free_energy,
    parse_state,
    select_states,
    run_tfep,
    state_mask,
    tfep_estimate,
    tfep_work,
)

__all__ = [
    "DEFAULT_STATE_A",
    "DEFAULT_STATE_B",
    "EnergyFn",
    "IndicatorFn",
    "StateBox",
    "StateDefinition",
    "parse_state",
    "state_mask",
    "select_states",
    "md_free_energy",
    "fit_state_map",
    "run_tfep",
    "TFEPRun",
    "TFEPWork",
    "tfep_work",
    "tfep_estimate",
]
