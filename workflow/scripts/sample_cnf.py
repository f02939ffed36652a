"""Rule sample_cnf: proposals of the CNF teacher with its exact log q (a baseline Boltzmann generator),
and the mean log q of held-out MD test frames (the divergence integrated backwards from each)."""

import json

import torch
from _common import heldout_frames, load_built, setup_logging
from boltzflow.cnf import CNFSampler, load_cnf, log_prob
from boltzflow.evaluation import heldout_log_likelihood
from boltzflow.flows import draw_sample_set, frame_from_config
from boltzflow.io import provenance, write_sample_set
from boltzflow.targets.forcefield import TorchForceField

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
settings = smk.params.settings
model, extra = load_cnf(smk.input.model)
frame = frame_from_config(extra["frame"])
built = load_built(smk.input)
if frame.cartesian_dim != 3 * built.n_atoms:
    raise ValueError(f"{smk.input.model}: the CNF's frame has {frame.cartesian_dim} coordinates, but {smk.input.xml} "
                     f"has {built.n_atoms} atoms")
cnf = settings["cnf"]
sampler = CNFSampler(model, frame, atol=cnf["atol"], rtol=cnf["rtol"], method=cnf["method"],
                     batch_size=cnf["batch_size"])
forcefield = TorchForceField(built.system, built.spec.temperature)
draw = draw_sample_set(sampler, forcefield, cnf["n_samples"], batch_size=cnf["batch_size"], seed=settings["seed"],
                       log=log)
stats = {**draw.stats(), "nfe": sampler.nfe}
log.info("%s", json.dumps(stats))


def cnf_log_q(x):
    """The teacher's exact log q of Cartesian points: the latent density plus the frame's Jacobian."""
    y = frame.to_latent(x)
    return log_prob(model, y, atol=cnf["atol"], rtol=cnf["rtol"], method=cnf["method"],
                    batch_size=cnf["batch_size"]) + frame.log_jacobian(y)


test_x = heldout_frames(smk.input, cnf["test_frames"])
heldout = {} if test_x is None else heldout_log_likelihood(cnf_log_q, test_x, batch_size=cnf["batch_size"])
log.info("held-out test frames: %s", json.dumps(heldout))
meta = provenance(smk.rule, settings, seed=settings["seed"], system=smk.wildcards.system,
                  model=f"cnf-seed{smk.wildcards.seed}", model_file=str(smk.input.model), stats=stats,
                  heldout=heldout)
write_sample_set(smk.output[0], draw.x, draw.energy, target=smk.wildcards.system, units="nm", log_q=draw.log_q,
                 metadata=meta)
