"""Rule tfep: free energy between two states by MD populations and targeted FEP with a RegFlow map."""

import json
import shutil

import mdtraj
import pandas as pd
import torch
from _common import load_built, setup_logging
from boltzflow.fep import run_tfep
from boltzflow.flows import frame_fingerprint, read_frame, save_flow
from boltzflow.io import provenance, read_table, write_table
from boltzflow.md import split_frames
from boltzflow.targets.forcefield import TorchForceField

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
fep = smk.params.fep
topology = mdtraj.load_topology(smk.input.pdb)
frame = read_frame(smk.input.frame, n_atoms=topology.n_atoms)
built = load_built(smk.input)
forcefield = TorchForceField(built.system, built.spec.temperature)


def energy(x):
    with torch.no_grad():
        return forcefield(torch.as_tensor(x, dtype=torch.float64)).numpy()


run = run_tfep(fep, smk.params.flows, frame, dihedrals=read_table(smk.input.dihedrals, required=("frame",))[0],
               train_x=split_frames(smk.input.frames, smk.input.split, "train"),
               test_x=split_frames(smk.input.frames, smk.input.split, "test"), topology=topology, energy=energy,
               checkpoint_dir=smk.params.checkpoint_dir, log=log)
meta = provenance(smk.rule, fep, seed=fep["seed"], system=smk.wildcards.system, frame=frame_fingerprint(frame),
                  map_summary=json.loads(json.dumps(run.summary, default=str)))
write_table(smk.output.work, pd.DataFrame({"work": run.work.work}), meta)
write_table(smk.output.history, run.history, meta)
save_flow(run.state_map, smk.output.model, extra={"summary": json.dumps(run.summary, default=str)})
write_table(smk.output.table, run.table, meta)
shutil.rmtree(smk.params.checkpoint_dir, ignore_errors=True)
shutil.rmtree(smk.params.checkpoint_dir + "-cnf", ignore_errors=True)
