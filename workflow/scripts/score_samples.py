"""Rule score_samples: the papers' metrics of one sample set against the MD test split (one row)."""

import json

import mdtraj
import pandas as pd
import torch
from _common import setup_logging
from boltzflow.evaluation import score_peptide_samples
from boltzflow.io import ArtifactError, provenance, read_sample_set, read_table, write_table
from boltzflow.md import split_frames_and_energies

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
settings = smk.params.settings
system, model = smk.wildcards.system, smk.wildcards.model
topology = mdtraj.load_topology(smk.input.pdb)
samples = read_sample_set(smk.input.samples, expected_dim=3 * topology.n_atoms, expected_target=system)
if "log_q" not in samples.columns:
    raise ArtifactError(f"{smk.input.samples}: a sample set to score needs a log_q column (it has "
                        f"{list(samples.columns.columns)})")
n_drawn = int(samples.metadata.get("stats", {}).get("n_drawn", len(samples)))
ref_x, ref_u = split_frames_and_energies(smk.input.frames, smk.input.split, "test")
log.info("%s: %d valid of %d proposals; %d test frames as reference", model, len(samples), n_drawn, len(ref_x))
row, resampled = score_peptide_samples(samples.x, samples.energy, samples.columns["log_q"].to_numpy(), n_drawn=n_drawn,
                            reference_x=ref_x, reference_energy=ref_u, topology=topology, settings=settings,
                            states=smk.params.fep)
history, _ = read_table(smk.input.history, required=("wall_s",))
name, seed = model.rsplit("-seed", 1)
method, arch = name.split("-", 1) if "-" in name else (name, name)
if "invertibility" in smk.input.keys():
    invertibility = json.loads(open(smk.input.invertibility).read())
else:  # an ODE flow is invertible by construction: nothing to flag
    invertibility = {"max_error_float32": float("nan"), "flagged": False}
row = {"system": system, "model": model, "method": method, "architecture": arch, "seed": int(seed), **row,
       "invertibility_max_error": invertibility["max_error_float32"],
       "invertibility_flagged": bool(invertibility["flagged"]),
       "train_s": float(history["wall_s"].iloc[-1]),
       "sampling_s_per_200k": float(samples.metadata.get("stats", {}).get("sampling_s_per_200k", float("nan"))),
       **{key: float(samples.metadata.get("heldout", {}).get(key, float("nan")))
          for key in ("test_log_q", "test_log_q_se", "test_log_q_finite")}}
log.info("%s", json.dumps(row, default=str))
meta = provenance(smk.rule, settings, seed=settings["seed"], system=system, model=model)
write_table(smk.output.resampled, resampled, meta)
write_table(smk.output.metrics, pd.DataFrame([row]), meta)
