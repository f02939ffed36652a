"""Rule cnf_pairs_shard: one shard of the reflow pairs (prior draw, its image under the CNF teacher)."""

import torch
from _common import setup_logging
from boltzflow.cnf import load_cnf
from boltzflow.couplings import (
    check_teacher_quality,
    cnf_pairs,
    read_teacher_metrics,
    shard_seed,
    teacher_record,
)
from boltzflow.flows import frame_fingerprint
from boltzflow.io import provenance, write_pairs
from boltzflow.units import resolve_device

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
settings = smk.params.settings
shard, n_pairs = int(smk.wildcards.shard), int(smk.params.n_pairs)
metrics = None
if "teacher_metrics" in smk.input.keys():
    metrics = read_teacher_metrics(smk.input.teacher_metrics)
    for line in check_teacher_quality(metrics, settings["quality_floor"], smk.input.teacher_metrics):
        log.info("teacher quality floor passed: %s", line)
model, extra = load_cnf(smk.input.model)
teacher = teacher_record(smk.input.model, extra, metrics)
log.info("teacher %s (digest %s), trained %s steps; shard %d: %d pairs", teacher["model"], teacher["digest"],
         teacher["train_steps"], shard, n_pairs)
model = model.to(resolve_device(settings["device"]))
seed = shard_seed(settings["seed"], shard)
x0, x1, stats = cnf_pairs(model, n_pairs, batch_size=settings["batch_size"], seed=seed, method=settings["method"],
                          atol=settings["atol"], rtol=settings["rtol"], steps=settings["steps"], log=log)
write_pairs(smk.output[0], x0, x1, provenance(smk.rule, settings, seed=seed, kind="cnf", shard=shard,
                                              frame=frame_fingerprint(extra["frame"]), system=smk.wildcards.system,
                                              stats=stats, teacher=teacher))
