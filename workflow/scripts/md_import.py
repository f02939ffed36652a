"""Rule md_import: the user's frames (.npy/.xtc/.dcd + .pdb) -> md/{system}/frames.parquet."""

import mdtraj
import numpy as np
from _common import load_built, setup_logging
from boltzflow.io import provenance, write_sample_set
from boltzflow.md import reduced_energies
from boltzflow.systems import load_frames

smk = snakemake  # noqa: F821
log = setup_logging(smk)
files = smk.params.files
built = load_built(smk.input)
topology = mdtraj.Topology.from_openmm(built.topology)
xyz = load_frames(smk.input.frames, smk.input.topology, topology, files.get("units"))
log.info("read %d frames from %s; computing energies with OpenMM", len(xyz), smk.input.frames)
energy = reduced_energies(built.system, built.spec.temperature, xyz)
bad = int((~np.isfinite(energy)).sum())
if bad:
    raise ValueError(f"{smk.input.frames}: {bad} frames have non-finite energies")
n = len(xyz)
write_sample_set(
    smk.output[0], xyz.reshape(n, -1), energy, target=smk.wildcards.system, units="nm",
    extra={"replica": np.zeros(n, dtype=np.int32),
           "time_ps": (np.arange(n) + 1.0) * files["time_step_ps"]},
    metadata=provenance(smk.rule, files, source=str(smk.input.frames)),
)
log.info("wrote %d frames, energy mean %.2f kT", n, energy.mean())
