"""Evaluation of samples against a target or a reference: importance weights (ESS, SNIS),
distances between sample sets (E-W, T-W2, W2), chirality, bootstrap intervals, mode weights of
synthetic targets, MCMC diagnostics (split R-hat, autocorrelation time), the log-likelihood of
held-out data, conformational states of peptides, free-energy estimators, the scoring of peptide samples and of any sampler's sample set, and the result tables. It imports
no training code, so every stage can score its own output."""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "chirality": ["chirality_centres", "chirality_signs", "fix_chirality"],
    "diagnostics": ["initial_positive_sequence_tau", "integrated_autocorrelation_time", "split_rhat"],
    "distances": ["energy_wasserstein", "torus_wasserstein2", "wasserstein2"],
    "fep": ["fep_free_energy", "free_energy_from_populations", "md_free_energy", "tfep_estimate"],
    "likelihood": ["heldout_log_likelihood"],
    "modes": ["mode_coverage", "mode_weights"],
    "samplers": ["score_peptide_set", "score_sample_set", "state_populations"],
    "scoring": ["SCORE_DEFAULTS", "evenly_spaced", "reference_chirality", "score_peptide_samples"],
    "states": [
        "DEFAULT_STATE_A", "DEFAULT_STATE_B", "PHI_POSITIVE", "ROW_STATES", "STATES", "StateBox",
        "StateDefinition", "conformational_states", "parse_state", "phi_positive", "residues",
        "select_states", "state_mask",
    ],
    "statistics": ["BootstrapCI", "bootstrap_ci", "seed_summary"],
    "tables": [
        "EBM_METHOD_NAMES", "EBM_METRICS", "PAPER_SGDS_GAP", "SGDS_GROUPS", "SGDS_METHOD_NAMES",
        "SGDS_METRICS", "SHOOTOUT_METHOD_NAMES", "SHOOTOUT_METRICS", "shootout_method_name", "TABLE_METRICS", "ebm_table", "flow_table",
        "markdown_ebm_mode_weights", "markdown_ebm_rhat", "markdown_ebm_summary", "markdown_flow_table",
        "markdown_sgds_table", "markdown_shootout_table", "sgds_table", "shootout_table",
    ],
    "weights": ["Resampled", "kish_ess", "log_z_importance", "snis_resample"],
})
