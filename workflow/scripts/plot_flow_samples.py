"""Rule plot_flow_samples: MD vs every trained flow, energies and Ramachandran plots (paper Fig. 2)."""

import numpy as np
from _common import setup_logging
from boltzflow.io import read_sample_set, read_table
from boltzflow.plots import flow_samples_figure

smk = snakemake  # noqa: F821
setup_logging(smk)
frames = read_sample_set(smk.input.frames)
split, _ = read_table(smk.input.split, required=("frame", "split"))
dihedrals, _ = read_table(smk.input.dihedrals, required=("frame",))
test = np.sort(split.frame.to_numpy()[split.split.to_numpy() == "test"])
models = {}
for name, samples_path, resampled_path in zip(smk.params.models, smk.input.samples, smk.input.resampled):
    method, arch = name.rsplit("-seed", 1)[0].split("-", 1)
    resampled, _ = read_table(resampled_path)
    models.setdefault(arch, {})[method] = {"resampled": resampled, "label": {"mle": "MLE", "regflow": "RegFlow"}.get(
        method, method), "raw_energy": read_sample_set(samples_path).energy}
flow_samples_figure(frames.energy[test], dihedrals.set_index("frame").loc[test].reset_index(), models,
                    list(smk.output), title=f"{smk.wildcards.system}: MD test split vs flows (seed {smk.params.seed})")
