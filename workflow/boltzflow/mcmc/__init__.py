"""Markov chain Monte Carlo shared by the EBM, SGDS and MD stages.

:mod:`~boltzflow.mcmc.kernels` holds the transition kernels (ULA, MALA, i-SIR, IMH) and annealed
importance sampling, :mod:`~boltzflow.mcmc.tempering` the one replica-exchange swap rule of every
parallel-tempering ladder, and :mod:`~boltzflow.mcmc.reference` the reference sampler that draws
equilibrium samples of synthetic targets by parallel tempering.
"""

from boltzflow.mcmc.kernels import (  # noqa: F401
    MALA,
    ULA,
    AISResult,
    ChainState,
    CountingLogProb,
    GlobalLocal,
    LogProb,
    Proposal,
    SamplerRun,
    annealed_importance_sampling,
    imh_step,
    init_state,
    isir_step,
    mala_step,
    ula_step,
)
from boltzflow.mcmc.reference import (  # noqa: F401
    DEFAULTS,
    convergence_diagnostics,
    reference_samples,
)
from boltzflow.mcmc.tempering import neighbour_swap

__all__ = [
    "DEFAULTS",
    "convergence_diagnostics",
    "reference_samples",
    "LogProb",
    "CountingLogProb",
    "ChainState",
    "init_state",
    "ula_step",
    "mala_step",
    "MALA",
    "ULA",
    "Proposal",
    "imh_step",
    "isir_step",
    "SamplerRun",
    "GlobalLocal",
    "AISResult",
    "annealed_importance_sampling",
    "neighbour_swap",
]
