"""Targeted free-energy perturbation between two conformational states (Wirnsberger et al., 2020):
:func:`~boltzflow.fep.run.run_tfep` trains a RegFlow state map on OT or CNF pairs of MD frames of
state A and state B, then turns the maps' work values into a free-energy difference with the
estimators of :mod:`boltzflow.evaluation.fep`; the state boxes themselves live in
:mod:`boltzflow.evaluation.states`.
"""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "run": ["EnergyFn", "IndicatorFn", "TFEPRun", "TFEPWork", "fit_state_map", "run_tfep", "tfep_work"],
})
