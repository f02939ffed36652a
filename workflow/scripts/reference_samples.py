"""Rule reference_samples: equilibrium samples of a target by parallel-tempering MCMC."""

import numpy as np
import torch
from _common import setup_logging
from boltzflow.io import provenance, write_sample_set
from boltzflow.mcmc import reference_samples
from boltzflow.targets import load_target

smk = snakemake  # noqa: F821
log = setup_logging(smk)
settings = smk.params.settings
torch.set_num_threads(smk.threads)
target = load_target(smk.wildcards.target)
samples, diagnostics = reference_samples(target, settings["n_samples"], seed=settings["seed"],
                                         burn_in=settings["burn_in"], n_chains=settings["n_chains"],
                                         strict=settings["strict"], log=log.info)
with torch.no_grad():
    energy = target.energy(torch.from_numpy(samples)).numpy()
summary = {k: v for k, v in diagnostics.items() if np.isscalar(v) or isinstance(v, (list, dict, str))}
write_sample_set(
    smk.output[0], samples, energy, target=target.name,
    units="reduced (energy = -log unnormalised density)",
    extra={"chain": np.asarray(diagnostics["chain"], dtype=np.int32),
           "step": np.asarray(diagnostics["step"], dtype=np.int64)},
    metadata=provenance(smk.rule, settings, seed=settings["seed"], diagnostics=summary),
)
log.info("wrote %d samples; converged: %s", len(samples), diagnostics.get("converged"))
