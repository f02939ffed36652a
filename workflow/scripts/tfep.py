"""Rule tfep: free energy between two states by MD populations and targeted FEP with a RegFlow map."""

import json
import shutil

import mdtraj
import numpy as np
import pandas as pd
import torch
from _common import load_built, setup_logging
from boltzflow.fep import (
    fit_state_cnf,
    fit_state_map,
    md_free_energy,
    select_states,
    state_cnf_pairs,
    state_mask,
    state_pairs,
    tfep_estimate,
    tfep_work,
)
from boltzflow.flows import save_flow
from boltzflow.io import config_hash, provenance, read_table, write_table
from boltzflow.md import split_frames
from boltzflow.systems import backbone_dihedrals
from boltzflow.targets.forcefield import TorchForceField
from boltzflow.training import TrainSettings, flow_architecture, frame_fingerprint, read_frame, to_latent
from boltzflow.units import resolve_device

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
fep, flows = smk.params.fep, smk.params.flows
system = smk.wildcards.system
topology = mdtraj.load_topology(smk.input.pdb)
frame = read_frame(smk.input.frame, n_atoms=topology.n_atoms)

# (a) MD: populations of every frame, blocks of correlated frames resampled together
dihedrals, _ = read_table(smk.input.dihedrals, required=("frame",))
in_a_md, in_b_md = (state_mask(dihedrals, fep[key], name=key) for key in ("state_a", "state_b"))
md = md_free_energy(in_a_md, in_b_md, n_boot=fep["n_boot"], seed=fep["seed"], block=fep["md_block_frames"])
log.info("MD: dF = %.3f [%.3f, %.3f] kT from %d frames (%d in A, %d in B)", md["dF"], md["low"], md["high"],
         md["n"], md["n_a"], md["n_b"])

# (c) the state map: RegFlow on pairs of training frames of A and B -- the exact-OT pairs, or the
# reflow pairs of a state CNF trained on them (fep.coupling); no energies enter training
train_x = split_frames(smk.input.frames, smk.input.split, "train")
xa, xb, _, _ = select_states(train_x, backbone_dihedrals(train_x, topology), fep["state_a"], fep["state_b"])
log.info("training frames: %d in A, %d in B", len(xa), len(xb))
x0, x1 = state_pairs(to_latent(xa, frame), to_latent(xb, frame), batch_size=fep["ot_batch_size"], seed=fep["seed"],
                     n_pairs=fep["n_pairs"], log=log)
device = resolve_device(fep["device"])
if fep["coupling"] == "cnf":  # a CNF carries A onto B; its flow map gives the regression targets
    cnf = fep["cnf"]
    teacher, teacher_history, _ = fit_state_cnf(
        x0, x1, hidden=cnf["hidden"], layers=cnf["layers"],
        settings=TrainSettings.from_config({**cnf["train"], "seed": fep["seed"]}),
        checkpoint_dir=smk.params.checkpoint_dir + "-cnf", identity=config_hash({"fep": fep, "n": len(x0)}),
        device=device, log=log)
    x0, x1 = state_cnf_pairs(teacher, x0, batch_size=cnf["batch_size"], method=cnf["method"],
                             atol=cnf["atol"], rtol=cnf["rtol"])
    log.info("reflow state pairs from the state CNF: %d (flow-matching loss %.4g at the end)", len(x0),
             float(teacher_history["loss"].iloc[-1]))
architecture = flow_architecture(fep["architecture"], flows[fep["architecture"]], frame)
settings = TrainSettings.from_config({**fep["train"], "seed": fep["seed"]})
identity = config_hash({"fep": fep, "architecture": {**architecture, "frame": frame_fingerprint(frame)},
                        "n": len(x0)})
state_map, history, summary = fit_state_map(x0, x1, architecture, settings, fep["regflow"], smk.params.checkpoint_dir,
                                            identity=identity, device=device, invertibility=flows["invertibility"],
                                            log=log)

# TFEP on the test frames of A; the work uses the target's energy only here
test_x = split_frames(smk.input.frames, smk.input.split, "test")
xa_test, _, _, _ = select_states(test_x, backbone_dihedrals(test_x, topology), fep["state_a"], fep["state_b"])
built = load_built(smk.input)
forcefield = TorchForceField(built.system, built.spec.temperature)


def energy(x):
    with torch.no_grad():
        return forcefield(torch.as_tensor(x, dtype=torch.float64)).numpy()


def in_b(x):
    return state_mask(backbone_dihedrals(np.asarray(x, dtype=np.float32), topology), fep["state_b"], name="state_b")


work = tfep_work(state_map, xa_test, energy, in_b)
tfep = tfep_estimate(work.work, n_boot=fep["n_boot"], seed=fep["seed"])
log.info("TFEP: dF = %.3f [%.3f, %.3f] kT from %d test frames of A (ESS %.3f; %d mapped outside B, %d non-finite)",
         tfep["dF"], tfep["low"], tfep["high"], tfep["n"], tfep["ess"], work.n_outside_b, work.n_nonfinite)
rows = pd.DataFrame([
    {"estimator": "MD populations", "dF": md["dF"], "low": md["low"], "high": md["high"], "n": md["n"],
     "ess": np.nan, "n_outside_b": 0, "n_nonfinite": 0},
    {"estimator": "TFEP (RegFlow map)", "dF": tfep["dF"], "low": tfep["low"], "high": tfep["high"], "n": tfep["n"],
     "ess": tfep["ess"], "n_outside_b": work.n_outside_b, "n_nonfinite": work.n_nonfinite},
])
meta = provenance(smk.rule, fep, seed=fep["seed"], system=system, frame=frame_fingerprint(frame),
                  map_summary=json.loads(json.dumps(summary, default=str)))
write_table(smk.output.work, pd.DataFrame({"work": work.work}), meta)
write_table(smk.output.history, history, meta)
save_flow(state_map, smk.output.model, extra={"summary": json.dumps(summary, default=str)})
write_table(smk.output.table, rows, meta)
shutil.rmtree(smk.params.checkpoint_dir, ignore_errors=True)
shutil.rmtree(smk.params.checkpoint_dir + "-cnf", ignore_errors=True)
