"""Rule plot_sgds_particles: energy and interatomic-distance histograms of the samplers of particle
targets beside their reference samples (the SGDS paper's Fig. 3)."""

import numpy as np
import torch

from _common import run_keys, setup_logging
from boltzflow.io import read_sample_set, read_table
from boltzflow.plots import sgds_particle_figure
from boltzflow.targets import load_target


def energy_and_distances(target, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies and all interatomic distances (pooled) of the configurations ``x``, in float64."""
    with torch.no_grad():
        xt = torch.as_tensor(x, dtype=torch.float64)
        return target.energy(xt).numpy(), target.squared_distances(xt).sqrt().reshape(-1).numpy()


smk = snakemake  # noqa: F821
log = setup_logging(smk)
keys = run_keys(smk.params.runs)
targets = {t: load_target(t) for t in smk.params.targets}
references = {t: energy_and_distances(targets[t], read_sample_set(p, expected_target=t).x)
              for t, p in zip(smk.params.targets, smk.input.references)}
runs = [(*k, *energy_and_distances(targets[k[0]], read_table(p)[0].to_numpy()))
        for k, p in zip(keys, smk.input.samples) if k[0] in references]
sgds_particle_figure(runs, references, smk.output)
log.info("wrote %s", list(smk.output))
