"""mcmc."""

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
]
