"""Rule evaluate_ebm: the flowMC-EBM paper's metrics of one trained EBM."""

import json

import pandas as pd
import torch
from _common import setup_logging

from boltzflow.ebm import evaluate_ebm, load_dataset, load_ebm_model, resolve_run
from boltzflow.io import provenance, read_table, write_table

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
cfg = smk.params.ebm
dataset, method, seed = smk.wildcards.dataset, smk.wildcards.ebm_method, int(smk.wildcards.seed)
run = resolve_run(cfg, dataset, method, seed)
data = load_dataset(cfg, dataset, run.n_data)
ebm, flow, saved = load_ebm_model(smk.input.model)
chains, _ = read_table(smk.input.chains)
bank = torch.as_tensor(chains.to_numpy(), dtype=torch.float32)
if bank.shape[1] != ebm.dim:
    raise ValueError(f"{smk.input.chains}: chains have {bank.shape[1]} coordinates, the EBM {ebm.dim}")
ev = cfg["evaluation"]
metrics, grid = evaluate_ebm(ebm, flow, bank, run.settings, centres=data.centres, true_weights=data.weights,
                             true_log_prob=data.log_prob, box=data.box, grid_points=ev["grid_points"],
                             n_eval=ev["n_eval"], rhat_chains=ev["rhat_chains"], rhat_cycles=ev["rhat_cycles"],
                             support_fraction=ev["support_fraction"], seed=ev["seed"],
                             local_state=json.loads(saved["local_state"]) if "local_state" in saved else None)
log.info("%s %s seed %d: %s", dataset, method, seed, {k: round(v, 6) for k, v in metrics.items()})
meta = provenance(smk.rule, {"run": run.as_dict(), "evaluation": ev}, seed=seed, dataset=dataset, method=method)
row = {"dataset": dataset, "method": method, "seed": seed, "dim": ebm.dim, **metrics}
write_table(smk.output.metrics, pd.DataFrame([row]), meta)
write_table(smk.output.density, grid if grid is not None else pd.DataFrame({"x": [], "y": [], "log_p_model": []}), meta)
