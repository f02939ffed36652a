"""Rule summary_table: every system's flow table side by side (one row per system, architecture, method)."""

import pandas as pd
from _common import setup_logging
from boltzflow.evaluation import markdown_flow_table
from boltzflow.io import atomic_path, provenance, read_table, write_table

smk = snakemake  # noqa: F821
setup_logging(smk)
table = pd.concat([read_table(path)[0] for path in smk.input], ignore_index=True)
write_table(smk.output.table, table, provenance(smk.rule, {"systems": sorted(set(table.system))}))
text = "\n".join(markdown_flow_table(group, system=system, tolerance=smk.params.tolerance)
                 for system, group in table.groupby("system", sort=False))
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text(text)
