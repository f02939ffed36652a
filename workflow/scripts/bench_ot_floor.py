"""Rule bench_ot_floor: the regression floor of batch-OT pairs against the batch size, in the flows' frame."""

import os
import platform

from _common import setup_logging
from boltzflow.bench import bench_ot_floor, markdown_rows
from boltzflow.flows import read_frame, to_latent
from boltzflow.io import atomic_path, provenance, write_table
from boltzflow.md import split_frames

smk = snakemake  # noqa: F821
log = setup_logging(smk)
bench = smk.params.bench
train_x = split_frames(smk.input.frames, smk.input.split, "train")
frame = read_frame(smk.input.frame, n_atoms=train_x.shape[1] // 3)
latent = to_latent(train_x, frame)
table = bench_ot_floor(latent, bench["batch_sizes"], queries=bench["queries"], repeats=bench["repeats"],
                       seed=bench["seed"], log=log)
meta = provenance(smk.rule, bench, frame=frame["kind"], machine=f"{platform.machine()}, {os.cpu_count()} CPUs")
write_table(smk.output.table, table, meta)

shown = table.assign(**{c: table[c].map("{:.3g}".format) for c in
                        ("floor_per_dim", "floor_se", "independent_per_dim", "pair_sq_distance", "solve_s")})
lines = [
    f"# Regression floor of batch-OT pairs ({bench['system']}, {frame['kind']} frame, "
    f"{latent.shape[1]} dimensions)", "",
    f"- {bench['queries']} fixed prior points, each solved in {bench['repeats']} exact OT batches (POT emd) with fresh "
    f"prior draws and a fresh random subset of the {len(latent)} training frames; floor_per_dim = the variance of a "
    "point's partners over the batches (E||x1 - E[x1|x0]||^2 / d): the lowest loss a regression onto such pairs "
    "can reach",
    "- independent_per_dim: the same floor with independent pairing (the data's variance); a coupling that is a "
    "function would have floor 0",
    f"- machine {meta['machine']}; git {meta['git_commit']}",
    "- reproduce: snakemake --cores all bench_ot_floor", "",
    *markdown_rows(shown, ["batch_size", "floor_per_dim", "floor_se", "independent_per_dim", "ratio_vs_independent",
                           "pair_sq_distance", "solve_s"]),
]
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text("\n".join(lines) + "\n")
