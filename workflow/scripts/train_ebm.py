"""Rule train_ebm: one EBM (and its companion flow) trained by flowMC-EBM or ULA-EBM."""

import json
import shutil

import pandas as pd
import torch
from _common import setup_logging

from boltzflow.ebm import load_dataset, resolve_run, save_ebm_model, train_ebm
from boltzflow.io import config_hash, provenance, write_table

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
cfg = smk.params.ebm
dataset, method, seed = smk.wildcards.dataset, smk.wildcards.ebm_method, int(smk.wildcards.seed)
run = resolve_run(cfg, dataset, method, seed)
data = load_dataset(cfg, dataset, run.n_data)
log.info("%s: %d points in %d dimensions; %d iterations (%g epochs) of %s", dataset, len(data.x), data.x.shape[1],
         run.settings.iterations, run.epochs, method)
options = {"dataset": dataset, "run": run.as_dict(), "user_data": cfg["user_data"].get(dataset),
           "mixture_weights": cfg["mixture_weights"] if dataset == "mixture2d_weights" else None}
ebm, flow, bank, history, summary = train_ebm(
    torch.as_tensor(data.x), run.settings, run.energy, run.flow, smk.params.checkpoint_dir,
    centres=data.centres, box=data.box, grid_points=cfg["evaluation"]["history_grid_points"],
    identity=config_hash(options), log=log)
meta = provenance(smk.rule, options, seed=seed, dataset=dataset, method=method, dim=int(data.x.shape[1]),
                  summary=summary)
write_table(smk.output.history, history, meta)
chains = pd.DataFrame(bank.to(torch.float64).numpy(), columns=[f"x{i}" for i in range(bank.shape[1])])
write_table(smk.output.chains, chains, meta)
save_ebm_model(smk.output.model, ebm, flow, extra={"settings": json.dumps(run.as_dict()),
                                                    "local_state": json.dumps(summary["local_state"]),
                                                    "provenance": json.dumps(meta, default=str)})
shutil.rmtree(smk.params.checkpoint_dir, ignore_errors=True)  # the model is saved: no resume state needed
