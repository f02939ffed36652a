"""Rule bench_teacher: the CNF teacher trained for a ladder of steps and each prior pairing, scored as a Boltzmann generator."""

import os
import platform

import mdtraj
import torch
from _common import load_built, setup_logging
from boltzflow.bench import bench_teacher, write_markdown_report
from boltzflow.flows import read_frame
from boltzflow.io import provenance, write_table
from boltzflow.md import split_frames_and_energies
from boltzflow.plots import teacher_budget_figure
from boltzflow.targets.forcefield import TorchForceField

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
bench, cnf = smk.params.bench, smk.params.cnf
built = load_built(smk.input)
forcefield = TorchForceField(built.system, built.spec.temperature)
train_x, _ = split_frames_and_energies(smk.input.frames, smk.input.split, "train")
test_x, test_u = split_frames_and_energies(smk.input.frames, smk.input.split, "test")
frame = read_frame(smk.input.frame, n_atoms=train_x.shape[1] // 3)
table = bench_teacher(train_x, frame, mdtraj.load_topology(smk.input.pdb), lambda x: forcefield(x),
                      reference_x=test_x, reference_energy=test_u, steps=bench["steps"], pairings=bench["pairings"],
                      hidden=cnf["hidden"], layers=cnf["layers"], train=bench["train"], n_samples=bench["n_samples"],
                      sampler={k: bench[k] for k in ("method", "atol", "rtol", "batch_size")},
                      score={"n_eval": bench["n_eval"], "tw2_points": bench["tw2_points"]}, seeds=bench["seeds"], log=log)
meta = provenance(smk.rule, bench, cores=smk.threads, machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
                  architecture={"hidden": cnf["hidden"], "layers": cnf["layers"]})
write_table(smk.output.table, table, meta)
teacher_budget_figure(table, [smk.output.figure], f"CNF teacher of {bench['system']}: quality against training time")

shown = table.assign(**{c: table[c].map("{:.3g}".format) for c in ("ess", "e_w1", "t_w2", "e_w1_raw", "rk4_10_rms",
                                                                    "invalid_fraction")},
                     **{c: table[c].map("{:.0f}".format) for c in ("train_s", "sampling_s")})
notes = [
    f"velocity MLP {cnf['layers']} x {cnf['hidden']} (couplings.cnf), flow matching on {len(train_x)} training "
    f"frames, batch {bench['train']['batch_size']}, peak lr {bench['train']['lr']}, warm-up and cosine decay over each "
    "run's own steps; one fresh run per row",
    f"{bench['n_samples']} proposals per teacher with exact log q ({bench['method']}, atol {bench['atol']}); ESS over "
    f"all of them; E-W1 (SNIS-resampled) and T-W2 on {bench['n_eval']} points against the MD test frames; e_w1_raw "
    "without reweighting",
    "rk4_10_rms: RMS per dimension between RK4 with 10 steps and dopri5 at 1e-7 (how straight the paths are: the "
    "error of the cheap reflow solver)",
    f"{smk.threads} thread(s)",
]
write_markdown_report(smk.output.markdown, f"The CNF teacher's quality against its training budget ({bench['system']})",
                      notes, shown, ["pairing", "steps", "seed", "train_s", "ess", "e_w1", "t_w2", "e_w1_raw",
                                     "rk4_10_rms", "invalid_fraction", "sampling_s"], meta, "bench_teacher")
