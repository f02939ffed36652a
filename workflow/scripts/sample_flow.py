"""Rule sample_flow: N proposals of a trained flow with exact log q, energies and log-weights, and
the mean log q of held-out MD test frames."""

import json

import torch
from _common import heldout_frames, load_built, setup_logging
from boltzflow.evaluation import heldout_log_likelihood
from boltzflow.flows import BoltzmannGenerator, load_flow
from boltzflow.io import provenance, write_sample_set
from boltzflow.targets.forcefield import TorchForceField
from boltzflow.units import resolve_device

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
settings = smk.params.settings
device = resolve_device(settings["device"])
flow, extra = load_flow(smk.input.model, map_location=device)
built = load_built(smk.input)
if flow.cartesian_dim != 3 * built.n_atoms:
    raise ValueError(f"{smk.input.model}: the flow samples {flow.cartesian_dim} coordinates, but {smk.input.xml} "
                     f"has {built.n_atoms} atoms")
forcefield = TorchForceField(built.system, built.spec.temperature).to(device)
generator = BoltzmannGenerator(flow, lambda x: forcefield(x.to(device)))
draw = generator.draw(settings["n_samples"], batch_size=settings["batch_size"], seed=settings["seed"], log=log)
stats = draw.stats()
log.info("%s", json.dumps(stats))
test_x = heldout_frames(smk.input, settings["test_frames"])
heldout = {} if test_x is None else heldout_log_likelihood(lambda x: flow.log_prob(x.to(device)), test_x,
                                                            batch_size=settings["batch_size"])
log.info("held-out test frames: %s", json.dumps(heldout))
meta = provenance(smk.rule, settings, seed=settings["seed"], system=smk.wildcards.system,
                  model=f"{smk.wildcards.method}-{smk.wildcards.arch}-seed{smk.wildcards.seed}",
                  model_file=str(smk.input.model), stats=stats, heldout=heldout)
write_sample_set(smk.output[0], draw.x, draw.energy, target=smk.wildcards.system, units="nm", log_q=draw.log_q,
                 metadata=meta)
