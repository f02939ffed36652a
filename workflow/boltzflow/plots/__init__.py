"""Figures of every stage, drawn from tables and sample sets only: the rule scripts read (or draw)
the data, these functions plot it and save each figure in every requested format.

- :mod:`boltzflow.plots.md`: Ramachandran maps, energy histograms, basin populations over time;
- :mod:`boltzflow.plots.flows`: flow samples against MD, the RegFlow ablation, targeted FEP;
- :mod:`boltzflow.plots.ebm`: EBM mode weights and learned 2-D densities;
- :mod:`boltzflow.plots.sgds`: the SGDS gap, samples and particle-target histograms.
"""

import matplotlib

matplotlib.use("Agg")  # figures go to files, on nodes without a display

from boltzflow.plots.common import note_figure, save_figure  # noqa: E402
from boltzflow.plots.ebm import ebm_densities_figure, ebm_mode_weights_figure  # noqa: E402
from boltzflow.plots.flows import ablation_figure, fep_figure, flow_samples_figure  # noqa: E402
from boltzflow.plots.md import energy_histogram, populations_vs_time, ramachandran  # noqa: E402
from boltzflow.plots.sgds import sgds_gap_figure, sgds_particle_figure, sgds_samples_figure  # noqa: E402

__all__ = [
    "save_figure",
    "note_figure",
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
