"""Rule ebm_tables: the EBM metrics of every run as a summary, the mode-weight table and the R-hat table."""

from _common import setup_logging
from boltzflow.evaluation import ebm_table, markdown_ebm_mode_weights, markdown_ebm_rhat, markdown_ebm_summary
from boltzflow.io import atomic_path, provenance, read_table, write_table

smk = snakemake  # noqa: F821
log = setup_logging(smk)
table = ebm_table(read_table(path, required=("dataset", "method", "seed", "dim", "rhat_max"))[0]
                  for path in smk.input.metrics)
write_table(smk.output.summary_parquet, table, provenance(smk.rule))
for path, text in ((smk.output.summary, markdown_ebm_summary(table)), (smk.output.mode_weights, markdown_ebm_mode_weights(table)),
                   (smk.output.rhat, markdown_ebm_rhat(table))):
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    log.info("wrote %s", path)
