"""Rule ot_pairs: exact optimal-transport pairs between prior draws and the training frames."""

from _common import setup_logging
from boltzflow.flows import frame_fingerprint, read_frame
from boltzflow.io import provenance, write_pairs
from boltzflow.md import split_frames
from boltzflow.training import make_ot_pairs

smk = snakemake  # noqa: F821
log = setup_logging(smk)
settings = smk.params.settings
train_x = split_frames(smk.input.frames, smk.input.split, "train")
frame = read_frame(smk.input.frame, n_atoms=train_x.shape[1] // 3)
log.info("%d training frames; latent frame %s", len(train_x), frame_fingerprint(frame))
x0, x1, stats = make_ot_pairs(train_x, frame, batch_size=settings["batch_size"], n_pairs=settings["n_pairs"],
                              seed=settings["seed"], log=log)
log.info("OT: %.1f s of solves (largest batch %.2f s); mean squared cost %.2f -> %.2f per pair",
         stats["solve_seconds_total"], stats["solve_seconds_max_batch"], stats["mean_sq_cost_independent"],
         stats["mean_sq_cost_ot"])
write_pairs(smk.output[0], x0, x1, provenance(smk.rule, settings, seed=settings["seed"], kind="ot", frame=frame_fingerprint(frame),
                                              system=smk.wildcards.system, stats=stats))
