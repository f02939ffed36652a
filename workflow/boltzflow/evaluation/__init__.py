"""Evaluation of samples against a target or a reference: importance weights (ESS, SNIS),
distances between sample sets (E-W, T-W2, W2), chirality, bootstrap intervals, mode weights of
synthetic targets, MCMC diagnostics (split R-hat, autocorrelation time), conformational states of
peptides, free-energy estimators, the scoring of peptide samples and the result tables. It imports
no training code, so every stage can score its own output."""

from boltzflow.evaluation.chirality import (  # noqa: F401
    chirality_centres,
    chirality_signs,
    fix_chirality,
)
from boltzflow.evaluation.diagnostics import (  # noqa: F401
    initial_positive_sequence_tau,
    integrated_autocorrelation_time,
    split_rhat,
)
from boltzflow.evaluation.distances import (  # noqa: F401
    energy_wasserstein,
    torus_wasserstein2,
    wasserstein2,
)
from boltzflow.evaluation.fep import (  # noqa: F401
    fep_free_energy,
    free_energy_from_populations,
    md_free_energy,
    tfep_estimate,
)
from boltzflow.evaluation.modes import mode_coverage, mode_weights  # noqa: F401
from boltzflow.evaluation.scoring import (  # noqa: F401
    SCORE_DEFAULTS,
    evenly_spaced,
    reference_chirality,
    score_peptide_samples,
)
from boltzflow.evaluation.states import (  # noqa: F401
    DEFAULT_STATE_A,
    DEFAULT_STATE_B,
    PHI_POSITIVE,
    ROW_STATES,
    STATES,
    StateBox,
    StateDefinition,
    conformational_states,
    parse_state,
    phi_positive,
    residues,
    select_states,
    state_mask,
)
from boltzflow.evaluation.statistics import BootstrapCI, bootstrap_ci, seed_summary  # noqa: F401
from boltzflow.evaluation.tables import (  # noqa: F401
    EBM_METHOD_NAMES,
    EBM_METRICS,
    PAPER_SGDS_GAP,
    SGDS_GROUPS,
    SGDS_METHOD_NAMES,
    SGDS_METRICS,
    TABLE_METRICS,
    ebm_table,
    flow_table,
    markdown_ebm_mode_weights,
    markdown_ebm_rhat,
    markdown_ebm_summary,
    markdown_flow_table,
    markdown_sgds_table,
    sgds_table,
)
from boltzflow.evaluation.weights import (  # noqa: F401
    Resampled,
    kish_ess,
    log_z_importance,
    snis_resample,
)

__all__ = [
    "kish_ess",
    "Resampled",
    "snis_resample",
    "log_z_importance",
    "energy_wasserstein",
    "torus_wasserstein2",
    "wasserstein2",
    "chirality_centres",
    "chirality_signs",
    "fix_chirality",
    "free_energy_from_populations",
    "fep_free_energy",
    "md_free_energy",
    "tfep_estimate",
    "BootstrapCI",
    "bootstrap_ci",
    "seed_summary",
    "mode_weights",
    "mode_coverage",
    "split_rhat",
    "initial_positive_sequence_tau",
    "integrated_autocorrelation_time",
    "STATES",
    "PHI_POSITIVE",
    "ROW_STATES",
    "DEFAULT_STATE_A",
    "DEFAULT_STATE_B",
    "residues",
    "conformational_states",
    "phi_positive",
    "StateBox",
    "StateDefinition",
    "parse_state",
    "state_mask",
    "select_states",
    "SCORE_DEFAULTS",
    "evenly_spaced",
    "reference_chirality",
    "score_peptide_samples",
    "TABLE_METRICS",
    "flow_table",
    "markdown_flow_table",
    "EBM_METRICS",
    "EBM_METHOD_NAMES",
    "ebm_table",
    "markdown_ebm_summary",
    "markdown_ebm_mode_weights",
    "markdown_ebm_rhat",
    "SGDS_METRICS",
    "SGDS_METHOD_NAMES",
    "sgds_table",
    "PAPER_SGDS_GAP",
    "SGDS_GROUPS",
    "markdown_sgds_table",
]
