"""Rule shootout_table: every run of the comparison as one table (means and intervals over seeds)."""

from _common import setup_logging
from boltzflow.evaluation import markdown_shootout_table, shootout_table
from boltzflow.io import atomic_path, provenance, read_table, write_table

smk = snakemake  # noqa: F821
log = setup_logging(smk)
table = shootout_table(read_table(path, required=("target", "method", "budget", "seed", "energy_calls", "energy_w1"))[0]
                       for path in smk.input.runs)
write_table(smk.output.table_parquet, table, provenance(smk.rule))
with atomic_path(smk.output.table) as tmp:
    tmp.write_text(markdown_shootout_table(table))
log.info("wrote %s", smk.output.table)
