"""fep."""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "run": [
        "DEFAULT_STATE_A", "DEFAULT_STATE_B", "EnergyFn", "IndicatorFn", "StateBox", "StateDefinition",
        "TFEPRun", "TFEPWork", "fit_state_map", "md_free_energy", "parse_state", "select_states", "run_tfep",
        "state_mask", "tfep_estimate", "tfep_work",
    ],
})
