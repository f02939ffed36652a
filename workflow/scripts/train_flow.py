"""Rule train_flow: a coupling flow trained by RegFlow (on pairs) or MLE (on the training frames)."""

import json
import shutil

import torch
from _common import setup_logging
from boltzflow.couplings import check_pairs_teacher
from boltzflow.evaluation import evenly_spaced
from boltzflow.flows import check_same_frame, frame_fingerprint, read_frame, save_flow
from boltzflow.io import atomic_path, config_hash, provenance, read_pairs, write_table
from boltzflow.md import split_frames
from boltzflow.training import TrainSettings, fit_flow, flow_architecture

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
flows = smk.params.flows
method, arch, seed = smk.wildcards.method, smk.wildcards.arch, int(smk.wildcards.seed)
train_x = split_frames(smk.input.frames, smk.input.split, "train")
val_x = split_frames(smk.input.frames, smk.input.split, "val") if flows["validation"]["frames"] else None
if val_x is not None:
    val_x = val_x[evenly_spaced(len(val_x), flows["validation"]["frames"])]
frame = read_frame(smk.input.frame, n_atoms=train_x.shape[1] // 3)
architecture = flow_architecture(arch, flows[arch], frame)
settings = TrainSettings.from_config({**flows["train"], "seed": seed})
pairs = None
if method == "regflow":
    x0, x1, pair_meta = read_pairs(smk.input.pairs, expected_dim=frame_fingerprint(frame)["dim"])
    check_same_frame(frame, pair_meta["frame"], smk.input.pairs)
    if "teacher" in smk.input.keys():
        teacher = check_pairs_teacher(pair_meta, smk.input.teacher, smk.input.pairs)
        log.info("pairs made by teacher %s (digest %s)", teacher["model"], teacher["digest"])
    limit = flows["regflow"].get("n_pairs")
    if limit is not None:
        if limit > len(x0):
            log.warning("flows.regflow.n_pairs = %d, but %s holds %d pairs: using all", limit, smk.input.pairs, len(x0))
        x0, x1 = x0[:limit], x1[:limit]
    pairs = (x0, x1)
options = {"method": method, "architecture": {**architecture, "frame": frame_fingerprint(frame)},
           "train": flows["train"], "seed": seed, "validation": flows["validation"],
           "regflow": flows["regflow"] if method == "regflow" else None,
           "pairs": pair_meta.get("config_hash") if method == "regflow" else None, "n_train": len(train_x)}
model, history, summary = fit_flow(method, architecture, settings, smk.params.checkpoint_dir, pairs=pairs,
                                   train_x=train_x, regflow=flows["regflow"], invertibility=flows["invertibility"],
                                   validation_x=val_x, keep_best=flows["validation"]["keep_best"],
                                   identity=config_hash(options), device=flows["device"], log=log)
meta = provenance(smk.rule, options, seed=seed, system=smk.wildcards.system, method=method, architecture=arch,
                  regflow=options["regflow"], n_pairs=len(pairs[0]) if pairs else None, validation=flows["validation"],
                  best_step=summary.get("best_step"),
                  teacher=pair_meta.get("teacher") if method == "regflow" else None)
write_table(smk.output.history, history, meta)
with atomic_path(smk.output.invertibility) as tmp:
    tmp.write_text(json.dumps(summary["invertibility"], indent=2))
save_flow(model, smk.output.model, extra={"summary": json.dumps(summary), "provenance": json.dumps(meta, default=str)})
shutil.rmtree(smk.params.checkpoint_dir, ignore_errors=True)  # the model is saved: no resume state needed
