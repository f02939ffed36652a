"""Rule sgds_tables: every SGDS / TB run's metrics as one table (means over seeds)."""

from _common import setup_logging
from boltzflow.evaluation import markdown_sgds_table, sgds_table
from boltzflow.io import atomic_path, provenance, read_table, write_table

smk = snakemake  # noqa: F821
log = setup_logging(smk)
table = sgds_table(read_table(path, required=("target", "method", "seed", "elbo", "energy_calls"))[0]
                   for path in smk.input.metrics)
write_table(smk.output.table_parquet, table, provenance(smk.rule))
with atomic_path(smk.output.table) as tmp:
    tmp.write_text(markdown_sgds_table(table))
log.info("wrote %s", smk.output.table)
