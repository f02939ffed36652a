"""Rule train_cnf: the flow-matching CNF teacher of reflow pairs, trained on the training frames."""

import shutil

import torch
from _common import setup_logging
from boltzflow.cnf import save_cnf
from boltzflow.flows import frame_fingerprint, read_frame, to_latent
from boltzflow.io import config_hash, provenance, write_table
from boltzflow.md import split_frames
from boltzflow.training import TrainSettings, fit_cnf

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
settings = smk.params.settings
seed = int(smk.wildcards.seed)
train_x = split_frames(smk.input.frames, smk.input.split, "train")
frame = read_frame(smk.input.frame, n_atoms=train_x.shape[1] // 3)
train_settings = TrainSettings.from_config({**settings["train"], "seed": seed})
identity = config_hash({"settings": settings, "seed": seed, "frame": frame_fingerprint(frame), "n": len(train_x)})
model, history, summary = fit_cnf(to_latent(train_x, frame), hidden=settings["hidden"], layers=settings["layers"],
                                  settings=train_settings, checkpoint_dir=smk.params.checkpoint_dir,
                                  prior_pairing=settings["prior_pairing"],
                                  identity=identity, device=settings["device"], log=log)
meta = provenance(smk.rule, settings, seed=seed, system=smk.wildcards.system, frame=frame_fingerprint(frame))
write_table(smk.output.history, history, meta)
save_cnf(model, smk.output.model, {"frame": frame, "summary": summary, "provenance": meta})
shutil.rmtree(smk.params.checkpoint_dir, ignore_errors=True)  # the model is saved: no resume state needed
