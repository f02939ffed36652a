"""Rule flow_frame: the coordinate frame every flow of a system works in, fitted to its training frames."""

import mdtraj
from _common import setup_logging
from boltzflow.flows import frame_fingerprint, latent_frame, write_frame
from boltzflow.io import provenance
from boltzflow.md import split_frames

smk = snakemake  # noqa: F821
log = setup_logging(smk)
settings = smk.params.settings
train_x = split_frames(smk.input.frames, smk.input.split, "train")
frame = latent_frame(train_x, train_x.shape[1] // 3, kind=settings["kind"],
                     topology=mdtraj.load_topology(smk.input.topology), reference_atoms=settings["reference_atoms"],
                     torsion_map=settings["torsions"])
fingerprint = frame_fingerprint(frame)
log.info("%d training frames -> %s frame, latent dimension %d, reference atoms %s", len(train_x), frame["kind"],
         fingerprint["dim"], fingerprint["reference_atoms"] or "-")
write_frame(smk.output[0], frame, provenance(smk.rule, settings, system=smk.wildcards.system))
