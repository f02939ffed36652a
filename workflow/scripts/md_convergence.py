"""Rule md_convergence: basin populations of the MD data with block-bootstrap intervals."""

from _common import setup_logging
from boltzflow.io import atomic_path, provenance, read_sample_set, read_table, write_table
from boltzflow.md import convergence_curves, convergence_report
from boltzflow.plots import populations_vs_time

smk = snakemake  # noqa: F821
log = setup_logging(smk)
settings = dict(smk.params.settings)
options = {"n_boot": settings["n_boot"], "seed": settings["seed"], "block_frames": settings["block_frames"]}
system = smk.wildcards.system
samples = read_sample_set(smk.input.frames)
dihedrals, _ = read_table(smk.input.dihedrals, required=("frame",))
table, markdown, summary = convergence_report(samples.columns, dihedrals, name=system, **options)
write_table(smk.output.table, table,
            provenance(smk.rule, settings, seed=settings["seed"], convergence=summary))
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text(markdown)
curves = convergence_curves(samples.columns, dihedrals, **options)
populations_vs_time(curves, list(smk.output.figures), title=f"{system} MD: populations vs simulated time")
log.info("%d frames, %d chains, %.3g ns; halves agree: %s; no drift: %s", summary["n_frames"],
         summary["n_chains"], summary["aggregate_time_ns"], summary["all_halves_agree"], summary["no_drift"])
if not summary["all_halves_agree"]:
    log.warning("independent halves disagree for: %s", ", ".join(summary["halves_disagree"]))
if not summary["no_drift"]:
    log.warning("first and second half of the chains disagree for: %s", ", ".join(summary["drift"]))
