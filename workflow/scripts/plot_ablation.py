"""Rule plot_ablation: RegFlow metrics against the regulariser weight, the number of pairs and the
training steps of the CNF teacher (paper Fig. 3), with the main RegFlow flows as a reference."""

import pandas as pd
from _common import setup_logging
from boltzflow.io import atomic_path, provenance, read_table, write_table
from boltzflow.plots import ablation_figure

ABLATION_KINDS = {"lam": "lambda_reg", "pairs": "n_pairs", "teacher": "teacher_steps"}

smk = snakemake  # noqa: F821
setup_logging(smk)
rows = []
for name, path in zip(smk.params.models, smk.input.ablations):
    row = read_table(path)[0].iloc[0].to_dict()
    variant = name.rsplit("-seed", 1)[0].split("-", 2)[2]  # regflow-<arch>-<variant>-seed<n>
    prefix = next(p for p in ABLATION_KINDS if variant.startswith(p) and variant[len(p):][:1].isdigit())
    kind = ABLATION_KINDS[prefix]
    value = float(variant[len(prefix):]) if kind == "lambda_reg" else int(variant[len(prefix):])
    rows.append({"variant": variant, "kind": kind, "value": value, **row})
for name, metrics, history in zip(smk.params.main_models, smk.input.main_metrics, smk.input.main_histories):
    meta = read_table(history)[1]
    teacher = meta.get("teacher") or {}
    rows.append({"variant": "main", "kind": "main", "value": float("nan"), **read_table(metrics)[0].iloc[0].to_dict(),
                 "main_lambda_reg": meta["regflow"]["lambda_reg"], "main_n_pairs": meta["n_pairs"],
                 "main_teacher_steps": teacher.get("train_steps")})
table = pd.DataFrame(rows)
write_table(smk.output.table, table, provenance(smk.rule, smk.params.settings, system=smk.wildcards.system))
ablation_figure(table, list(smk.output.figures), title=f"{smk.wildcards.system}: RegFlow ablations "
                f"({smk.params.settings['architecture']})")
columns = ["kind", "value", "seed", "ess", "e_w1", "e_w2", "t_w2", "median_energy_raw", "invertibility_flagged"]
lines = [f"# {smk.wildcards.system}: RegFlow ablations", "",
         "One setting changed per row, everything else as in flows.*; metrics as in the flow table. Rows "
         f"`teacher_steps`: a CNF teacher trained that many steps, {smk.params.settings['teacher_pairs']:,} of "
         "its reflow pairs. Rows `main`: the main RegFlow flows (value: their pairs).", "",
         "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
for _, r in table.sort_values(["kind", "value", "seed"]).iterrows():
    r = r.copy()
    if r["kind"] == "main":
        r["value"] = r["main_n_pairs"]
    lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in columns) + " |")
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text("\n".join(lines) + "\n")
