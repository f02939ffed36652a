"""Rule bench_frames: the same MLE flow trained in each coordinate frame; ESS and energies side by side."""

import os
import platform

import mdtraj
import torch
from _common import load_built, setup_logging
from boltzflow.bench import bench_frames, markdown_rows
from boltzflow.io import atomic_path, provenance, write_table
from boltzflow.md import split_frames
from boltzflow.targets.forcefield import TorchForceField

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
bench = smk.params.bench
built = load_built(smk.input)
forcefield = TorchForceField(built.system, built.spec.temperature)
train_x = split_frames(smk.input.frames, smk.input.split, "train")
test_x = split_frames(smk.input.frames, smk.input.split, "test")[: bench["n_samples"]]
with torch.no_grad():
    reference = forcefield(torch.as_tensor(test_x, dtype=torch.float64)).numpy()
architecture = {key: bench[key] for key in ("layers", "hidden", "depth", "bins", "bound") if key in bench}
table = bench_frames(train_x, mdtraj.load_topology(smk.input.pdb), lambda x: forcefield(x), kinds=bench["kinds"],
                     transform=bench["transform"], architecture=architecture, train=bench["train"],
                     n_samples=bench["n_samples"], seeds=bench["seeds"], reference_energy=reference, log=log)
meta = provenance(smk.rule, bench, cores=smk.threads, machine=f"{platform.machine()}, {os.cpu_count()} CPUs")
write_table(smk.output.table, table, meta)

# ESS spans orders of magnitude between frames: three significant digits, not fixed decimals
shown = table.assign(**{c: table[c].map("{:.3g}".format) for c in
                        ("ess", "ess_ratio", "invalid_fraction", "median_energy", "reference_median_energy",
                         "final_nll")})
lines = [
    f"# Coordinate frames as Boltzmann generators ({bench['system']})", "",
    f"- the same {bench['transform']} flow ({bench['layers']} layers, {bench['depth']} x {bench['hidden']}) trained "
    f"by maximum likelihood for {bench['train']['steps']} steps of {bench['train']['batch_size']} on "
    f"{len(train_x)} training frames in each frame; {bench['n_samples']} proposals per model, ESS over all of them",
    "- invalid_fraction: proposals outside the frame's chart (a torsion beyond its cut) or with a non-finite "
    "density, weight 0; final_nll is in each frame's own latent units and not comparable across frames",
    f"- ess_ratio: ESS over the {bench['kinds'][0]} frame's, same seed; reference_median_energy: the MD test frames",
    f"- {smk.threads} thread(s); machine {meta['machine']}; git {meta['git_commit']}",
    "- reproduce: snakemake --cores all bench_frames", "",
    *markdown_rows(shown, ["kind", "seed", "dim", "ess", "ess_ratio", "invalid_fraction", "median_energy",
                           "reference_median_energy", "final_nll", "train_s"]),
]
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text("\n".join(lines) + "\n")
