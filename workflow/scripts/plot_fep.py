"""Rule plot_fep: the free-energy estimates of a system side by side (paper Fig. 4) and their table."""

import numpy as np
import pandas as pd
from _common import setup_logging
from boltzflow.io import atomic_path, read_table
from boltzflow.plots import fep_figure

smk = snakemake  # noqa: F821
setup_logging(smk)
fep = smk.params.fep
table, _ = read_table(smk.input.table, required=("estimator", "dF", "low", "high"))
work, _ = read_table(smk.input.work, required=("work",))
flows = pd.concat([read_table(path)[0] for path in smk.input.metrics], ignore_index=True)
rows = [table.iloc[0], table.iloc[1]]
for _, m in flows.sort_values(["architecture", "method", "seed"]).iterrows():
    name = m["method"] if m["method"] == m["architecture"] else f"{m['method']}-{m['architecture']}"
    rows.append(pd.Series({"estimator": f"{name} seed {m['seed']}, reweighted",
                           "dF": m.get("dF", np.nan), "low": m.get("dF_low", np.nan),
                           "high": m.get("dF_high", np.nan), "n": m["n_drawn"], "ess": m["ess"]}))
estimates = pd.DataFrame(rows).reset_index(drop=True)
state = lambda s: s if isinstance(s, str) else "custom boxes"  # noqa: E731
title = f"{smk.wildcards.system}: A = {state(fep['state_a'])}, B = {state(fep['state_b'])}"
fep_figure(estimates, work["work"].to_numpy(), list(smk.output.figures), title)
lines = [f"# {title}", "", "dF = F_B - F_A in kT with a 95 % bootstrap interval. MD: populations of all frames "
         f"(blocks of {fep['md_block_frames']} frames); TFEP: test frames of A through the RegFlow state map; "
         "flows: their reweighted samples (meaningless where the ESS is near 0).", "",
         "| estimator | dF | interval | n | ESS |", "|---|---|---|---|---|"]
for _, r in estimates.iterrows():
    ess = "-" if pd.isna(r.get("ess")) else f"{r['ess']:.3g}"
    lines.append(f"| {r['estimator']} | {r['dF']:.3f} | [{r['low']:.3f}, {r['high']:.3f}] | {int(r['n'])} | {ess} |")
with atomic_path(smk.output.table) as tmp:
    tmp.write_text("\n".join(lines) + "\n")
