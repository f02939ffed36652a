"""Figures of every stage, drawn from tables and sample sets only: the rule scripts read (or draw)
the data, these functions plot it and save each figure in every requested format.

- :mod:`boltzflow.plots.md`: Ramachandran maps, energy histograms, basin populations over time;
- :mod:`boltzflow.plots.flows`: flow samples against MD, the RegFlow ablation, targeted FEP, the
  CNF teacher's quality against its training time;
- :mod:`boltzflow.plots.ebm`: EBM mode weights and learned 2-D densities;
- :mod:`boltzflow.plots.sgds`: the SGDS gap, samples and particle-target histograms;
- :mod:`boltzflow.plots.shootout`: every method's errors against the energy calls it spent.
"""

import lazy_loader
import matplotlib

matplotlib.use("Agg")  # figures go to files, on nodes without a display

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "common": ["note_figure", "save_figure"],
    "ebm": ["ebm_densities_figure", "ebm_mode_weights_figure"],
    "flows": ["ablation_figure", "fep_figure", "flow_samples_figure", "teacher_budget_figure"],
    "md": ["energy_histogram", "populations_vs_time", "ramachandran"],
    "sgds": ["sgds_gap_figure", "sgds_particle_figure", "sgds_samples_figure"],
    "shootout": ["shootout_figure"],
})
