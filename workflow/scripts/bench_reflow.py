"""Rule bench_reflow: the ODE solvers of reflow pairs side by side, pair error against a tight solve and pairs/s."""

import os
import platform

import torch
from _common import setup_logging
from boltzflow.bench import bench_reflow, markdown_rows
from boltzflow.cnf import load_cnf
from boltzflow.io import atomic_path, file_digest, provenance, write_table

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
bench = smk.params.bench
model, extra = load_cnf(smk.input.model)
table = bench_reflow(model, n_pairs=bench["n_pairs"], solvers=bench["solvers"], reference_tol=bench["reference_tol"],
                     batch_size=bench["batch_size"], seed=bench["seed"], log=log)
steps = (extra.get("summary") or {}).get("steps")
meta = provenance(smk.rule, bench, teacher={"model": smk.input.model, "digest": file_digest(smk.input.model),
                                            "train_steps": steps},
                  machine=f"{platform.machine()}, {os.cpu_count()} CPUs", threads=smk.threads)
write_table(smk.output.table, table, meta)

shown = table.assign(**{c: table[c].map("{:.3g}".format) for c in
                        ("rms_error_per_dim", "max_error", "nfe_per_batch", "pairs_per_s", "speedup_vs_reference")})
lines = [
    f"# Reflow-pair solvers ({bench['system']}, CNF teacher of {steps} training steps, {model.dim} dimensions)", "",
    f"- the same {bench['n_pairs']} prior draws integrated by every solver, in batches of {bench['batch_size']}; "
    f"errors against dopri5 at atol = rtol = {bench['reference_tol']:g} (the last row): rms_error_per_dim = "
    "sqrt(mean ||x1 - x1_ref||^2 / d), max_error = the largest ||x1 - x1_ref||",
    "- a student's regression error (per dimension) well above a solver's pair error means the solver costs "
    "the student nothing; speedup_vs_reference = the reference's time over the solver's, this run",
    f"- {smk.threads} thread(s); machine {meta['machine']}; git {meta['git_commit']}",
    "- reproduce: snakemake --cores all bench_reflow", "",
    *markdown_rows(shown, ["solver", "rms_error_per_dim", "max_error", "nfe_per_batch", "pairs_per_s",
                           "speedup_vs_reference"]),
]
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text("\n".join(lines) + "\n")
