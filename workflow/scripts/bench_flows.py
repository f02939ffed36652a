"""Rule bench_flows: sampling with exact log-density and training throughput, as ratios."""

import os
import platform

from _common import setup_logging
from boltzflow.bench import bench_flows, markdown_rows
from boltzflow.io import atomic_path, provenance, write_table

smk = snakemake  # noqa: F821
log = setup_logging(smk)
bench = smk.params.bench
table = bench_flows(dim=bench["dim"], layers=bench["layers"], hidden=bench["hidden"], depth=bench["depth"],
                    bins=bench["bins"], batch_sizes=tuple(bench["batch_sizes"]), repeats=bench["repeats"],
                    threads=smk.threads, cnf_hidden=bench["cnf_hidden"], cnf_layers=bench["cnf_layers"],
                    cnf_samples=bench["cnf_samples"], train_steps=bench["train_steps"],
                    train_batch=bench["train_batch"], log=log.info)
meta = provenance(smk.rule, bench, cores=smk.threads, machine=f"{platform.machine()}, {os.cpu_count()} CPUs")
write_table(smk.output.table, table, meta)


sampling = table[table.section == "sampling"]
training = table[table.section == "training"]
lines = [
    "# Flow benchmark", "",
    f"- latent dim {bench['dim']} (al2 in the body frame: 3 N - 6), {bench['layers']} coupling layers, conditioners "
    f"{bench['depth']} x {bench['hidden']}, {bench['bins']} spline bins; CNF velocity MLP "
    f"{bench['cnf_layers']} x {bench['cnf_hidden']}, exact divergence, untrained (an upper bound on its rate)",
    f"- {smk.threads} thread(s); machine {meta['machine']}; git {meta['git_commit']}",
    f"- {bench['repeats']} rounds, engines interleaved within a round; ratios taken within a round "
    "(median, min-max)",
    "- reproduce: snakemake --cores all bench_flows", "",
    "## Sampling with exact log-density", "",
    *markdown_rows(sampling, ["engine", "dtype", "batch", "samples_per_s", "parameters", "nfe", "ratio_vs_zuko_nsf",
                     "ratio_vs_zuko_nsf_min", "ratio_vs_zuko_nsf_max", "ratio_vs_zuko_coupling",
                     "ratio_vs_zuko_coupling_min", "ratio_vs_zuko_coupling_max", "ratio_vs_cnf_float32",
                     "ratio_vs_cnf_float64"]),
    "", "## Training throughput (RegFlow vs MLE)", "",
    *markdown_rows(training, ["engine", "objective", "batch", "pairs_per_s", "ratio", "ratio_min", "ratio_max"]),
]
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text("\n".join(lines) + "\n")
