"""Rule plot_ablation: RegFlow metrics against the regulariser weight and the number of pairs (paper Fig. 3)."""

import pandas as pd
from _common import setup_logging
from boltzflow.io import atomic_path, provenance, read_table, write_table
from boltzflow.plots import ablation_figure

smk = snakemake  # noqa: F821
setup_logging(smk)
rows = []
for name, path in zip(smk.params.models, smk.input):
    row = read_table(path)[0].iloc[0].to_dict()
    variant = name.rsplit("-seed", 1)[0].split("-", 2)[2]  # regflow-<arch>-<variant>-seed<n>
    kind, value = ("lambda_reg", float(variant[3:])) if variant.startswith("lam") else ("n_pairs", int(variant[5:]))
    rows.append({"variant": variant, "kind": kind, "value": value, **row})
table = pd.DataFrame(rows)
write_table(smk.output.table, table, provenance(smk.rule, smk.params.settings, system=smk.wildcards.system))
ablation_figure(table, list(smk.output.figures), title=f"{smk.wildcards.system}: RegFlow ablations "
                f"({smk.params.settings['architecture']})")
columns = ["kind", "value", "seed", "ess", "e_w1", "e_w2", "t_w2", "median_energy_raw", "invertibility_flagged"]
lines = [f"# {smk.wildcards.system}: RegFlow ablations", "",
         "One setting changed per row, everything else as in flows.*; metrics as in the flow table.", "",
         "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
for _, r in table.sort_values(["kind", "value", "seed"]).iterrows():
    lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in columns) + " |")
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text("\n".join(lines) + "\n")
