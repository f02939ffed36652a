"""Markov chain Monte Carlo shared by the EBM, SGDS and MD stages.

:mod:`~boltzflow.mcmc.kernels` holds the transition kernels (ULA, MALA, i-SIR, IMH) and annealed
importance sampling, :mod:`~boltzflow.mcmc.tempering` the one replica-exchange swap rule of every
parallel-tempering ladder, and :mod:`~boltzflow.mcmc.reference` the reference sampler that draws
equilibrium samples of synthetic targets by parallel tempering.
"""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "kernels": [
        "MALA", "ULA", "AISResult", "ChainState", "CountingLogProb", "GlobalLocal", "LogProb", "Proposal",
        "SamplerRun", "annealed_importance_sampling", "imh_step", "init_state", "isir_step", "mala_step",
        "ula_step",
    ],
    "reference": ["DEFAULTS", "convergence_diagnostics", "reference_samples"],
    "tempering": ["neighbour_swap"],
})
