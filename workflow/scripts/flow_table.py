"""Rule flow_table: methods x metrics of a system's flows, mean and bootstrap interval over seeds."""

from _common import setup_logging
from boltzflow.evaluation import flow_table, markdown_flow_table
from boltzflow.io import atomic_path, provenance, read_table, write_table

smk = snakemake  # noqa: F821
log = setup_logging(smk)
rows = [read_table(path)[0] for path in smk.input]
table = flow_table(rows)
write_table(smk.output.table, table, provenance(smk.rule, {"models": len(rows)}, system=smk.wildcards.system))
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text(markdown_flow_table(table, system=smk.wildcards.system, tolerance=smk.params.tolerance))
log.info("%d models in %d rows", len(rows), len(table))
