"""Rule dihedrals: backbone phi/psi of every residue for every frame (radians)."""

import mdtraj
from _common import setup_logging
from boltzflow.io import provenance, read_sample_set, write_table
from boltzflow.systems import backbone_dihedrals, dihedral_atoms

smk = snakemake  # noqa: F821
log = setup_logging(smk)
topology = mdtraj.load_topology(smk.input.pdb)
samples = read_sample_set(smk.input.frames, expected_dim=3 * topology.n_atoms)
table = backbone_dihedrals(samples.x, topology)
write_table(smk.output[0], table, provenance(smk.rule, units="radian", atoms=dihedral_atoms(topology)))
log.info("%d frames, angles %s", len(table), list(table.columns[1:]))
