"""Rule bench_ot_floor: the regression floor of batch-OT pairs against the batch size, in the flows' frame."""

import os
import platform

from _common import setup_logging
from boltzflow.bench import bench_ot_floor, write_markdown_report
from boltzflow.flows import read_frame, to_latent
from boltzflow.io import provenance, write_table
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
notes = [
    f"{bench['queries']} fixed prior points, each solved in {bench['repeats']} exact OT batches (POT emd) with fresh "
    f"prior draws and a fresh random subset of the {len(latent)} training frames; floor_per_dim = the variance of a "
    "point's partners over the batches (E||x1 - E[x1|x0]||^2 / d): the lowest loss a regression onto such pairs "
    "can reach",
    "independent_per_dim: the same floor with independent pairing (the data's variance); a coupling that is a "
    "function would have floor 0",
]
write_markdown_report(smk.output.markdown, f"Regression floor of batch-OT pairs ({bench['system']}, {frame['kind']} "
                      f"frame, {latent.shape[1]} dimensions)", notes, shown,
                      ["batch_size", "floor_per_dim", "floor_se", "independent_per_dim", "ratio_vs_independent",
                       "pair_sq_distance", "solve_s"], meta, "bench_ot_floor")
