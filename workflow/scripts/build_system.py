"""Rule build_system: a peptide system from its spec -> topology PDB, System XML, spec JSON."""

import json

from _common import setup_logging
from boltzflow.io import atomic_path
from boltzflow.systems import PeptideSpec, build_peptide, write_system

log = setup_logging(snakemake)  # noqa: F821
spec = PeptideSpec(**snakemake.params.spec)  # noqa: F821
built = build_peptide(spec)
write_system(built, snakemake.output.pdb, snakemake.output.xml)  # noqa: F821
with atomic_path(snakemake.output.spec) as tmp:  # noqa: F821
    tmp.write_text(json.dumps(spec.to_dict(), indent=2))
log.info("%s: %d atoms, %d forces", spec.name, built.n_atoms, built.system.getNumForces())
