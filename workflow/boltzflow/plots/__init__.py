"""plots."""

from boltzflow.plots.figures import (  # noqa: F401
    ablation_figure,
    ebm_densities_figure,
    ebm_mode_weights_figure,
    energy_histogram,
    fep_figure,
    flow_samples_figure,
    populations_vs_time,
    ramachandran,
    save_figure,
    sgds_gap_figure,
    sgds_particle_figure,
    sgds_samples_figure,
)

__all__ = [
    "save_figure",
    "ramachandran",
    "flow_samples_figure",
    "ablation_figure",
    "fep_figure",
    "energy_histogram",
    "populations_vs_time",
    "ebm_mode_weights_figure",
    "ebm_densities_figure",
    "sgds_gap_figure",
    "sgds_samples_figure",
    "sgds_particle_figure",
]
