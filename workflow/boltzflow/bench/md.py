"""MD benchmark: plain OpenMM, the workflow's MD stage and the torch engine, raced side by side.

Every engine runs on the same machine and in the same process tree, and each row is reported as
a ratio to the fastest plain single-context OpenMM run; worker processes are started as
``python -m boltzflow.bench.md JOB.json``.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import openmm
import pandas as pd

from boltzflow.evaluation import conformational_states, initial_positive_sequence_tau
from boltzflow.io import atomic_path, read_sample_set, write_sample_set
from boltzflow.md import (
    BatchedLangevin,
    MDSettings,
    TorchMDSettings,
    available_platforms,
    bootstrap_population,
    gather_replicas,
    ladder_split,
    measure_ns_per_day,
    measure_throughput,
    run_parallel_tempering,
    run_replica,
    system_masses,
    torch_md_settings,
)
from boltzflow.systems import backbone_dihedrals, dihedral_atoms
from boltzflow.targets.forcefield import TorchForceField

__all__ = ["bench_md", "markdown_rows", "markdown_table"]


def _worker(job_file: str) -> None:
    """Entry point of a benchmark worker process (``python -m boltzflow.bench.md JOB.json``)."""
    kind = json.loads(Path(job_file).read_text()).get("kind", "stage")
    {"stage": _stage_worker, "torch_throughput": _torch_throughput_worker,
     "torch_run": _torch_run_worker, "plain_probe": _plain_probe_worker}[kind](job_file)


def _load_job(job_file: str) -> tuple[dict[str, Any], Path, openmm.System, np.ndarray]:
    """A worker's job description, its folder, and the system and positions stored there."""
    job = json.loads(Path(job_file).read_text())
    folder = Path(job["folder"])
    system = openmm.XmlSerializer.deserialize((folder / "system.xml").read_text())
    return job, folder, system, np.load(folder / "positions.npy")


def _wait_for_go(folder: Path, worker: int) -> None:
    """Tell the parent this worker is ready (warm-up and compilation done), then wait for all."""
    (folder / f"ready{worker}").touch()
    while not (folder / "go").exists():
        time.sleep(0.01)


def _torch_throughput_worker(job_file: str) -> None:
    """Measure the torch engine's throughput for this worker's replicas, in step with the others."""
    import torch


    job, folder, system, positions = _load_job(job_file)
    torch.set_num_threads(1)
    ff = TorchForceField(system, compile=job["n_replicas"] >= 64)
    options = dict(timestep_fs=job["timestep_fs"], hydrogen_mass_amu=job["hydrogen_mass_amu"], force_field=ff)
    measure_throughput(system, positions, job["n_replicas"], steps=5, warmup=5, **options)  # compile
    _wait_for_go(folder, job["worker"])
    result = measure_throughput(system, positions, job["n_replicas"], steps=job["steps"], warmup=2, **options)
    (folder / f"result{job['worker']}.json").write_text(json.dumps(result))


def _torch_run_worker(job_file: str) -> None:
    """One job of the torch engine (parallel tempering) for a given simulated length; records its span."""
    import torch


    job, folder, system, positions = _load_job(job_file)
    torch.set_num_threads(1)
    settings = TorchMDSettings(**job["settings"])
    worker = job["worker"]
    start = time.time()
    run_parallel_tempering(system, positions, settings, folder / f"torch{worker}.parquet", folder / f"tck{worker}",
                           target="bench", replica_offset=job["replica_offset"])
    (folder / f"span{worker}.json").write_text(json.dumps([start, time.time()]))


def _plain_probe_worker(job_file: str) -> None:
    """Plain Langevin dynamics with OpenMM's settings (real masses, 1 fs) of the given equilibrium
    start configurations on the torch force field; records phi every picosecond."""
    import mdtraj
    import torch


    job, folder, system, _ = _load_job(job_file)
    torch.set_num_threads(1)
    starts = np.load(folder / f"starts{job['worker']}.npy")
    topology = mdtraj.load_topology(str(folder / "topology.pdb"))
    ff = TorchForceField(system, temperature=None, compile=len(starts) >= 64)
    engine = BatchedLangevin(ff.energy_and_forces, system_masses(system), [job["temperature"]], dim=starts.shape[1],
                             n_ladders=len(starts), timestep_fs=1.0, friction_per_ps=job["friction_per_ps"],
                             seed=job["seed"])
    engine.set_positions(starts)
    engine.draw_velocities()
    atoms = np.array([job["phi_atoms"]])
    phi = np.empty((job["length_ps"], len(starts)))
    for frame in range(job["length_ps"]):
        engine.run(1000)
        traj = mdtraj.Trajectory(engine.x.numpy().reshape(len(starts), -1, 3), topology)
        phi[frame] = mdtraj.compute_dihedrals(traj, atoms, periodic=False)[:, 0]
    np.save(folder / f"phi{job['worker']}.npy", phi)


def _stage_worker(job_file: str) -> None:
    """Entry point of one benchmark worker process: run one MD-stage replica, record its span.

    Times are taken inside the worker, so interpreter start-up and imports are not counted
    (a workflow job pays those too, once, but they do not grow with simulated time).
    """
    job, folder, system, positions = _load_job(job_file)
    settings = MDSettings(**job["settings"])
    replica = job["replica"]
    start = time.time()
    run_replica(system, positions, job["temperature"], settings, replica,
                folder / f"replica{replica}.parquet", folder / f"ckpt{replica}", target="bench")
    (folder / f"span{replica}.json").write_text(json.dumps([start, time.time()]))


def _stage_ns_per_day(xml: str, positions: np.ndarray, temperature: float,
                      settings: MDSettings, replicas: int) -> float:
    """Aggregate ns/day of ``replicas`` MD-stage replicas run as parallel processes.

    Workers are separate interpreters (not multiprocessing): OpenMM state must never cross a
    fork, and ``spawn`` would re-run the calling Snakemake script in every worker.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "system.xml").write_text(xml)
        np.save(folder / "positions.npy", positions)
        procs = []
        for r in range(replicas):
            job = folder / f"job{r}.json"
            job.write_text(json.dumps({"folder": tmp, "settings": asdict(settings),
                                       "temperature": temperature, "replica": r}))
            procs.append(subprocess.Popen([sys.executable, "-m", "boltzflow.bench.md", str(job)]))
        for r, proc in enumerate(procs):
            if proc.wait() != 0:
                raise RuntimeError(f"benchmark worker {r} failed with exit code {proc.returncode}")
        spans = [json.loads((folder / f"span{r}.json").read_text()) for r in range(replicas)]
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    simulated_ns = replicas * (settings.equilibration_ps + settings.length_ps) * 1e-3
    return simulated_ns / (wall / 86400.0)


def _run_workers(folder: Path, jobs: list[dict[str, Any]], barrier: bool) -> None:
    """Run one worker process per job; with ``barrier``, release them together once all are ready."""
    procs = []
    for job in jobs:
        path = folder / f"job{job['worker']}.json"
        path.write_text(json.dumps({**job, "folder": str(folder)}))
        procs.append(subprocess.Popen([sys.executable, "-m", "boltzflow.bench.md", str(path)]))
    if barrier:
        while not all((folder / f"ready{job['worker']}").exists() for job in jobs):
            if any(proc.poll() not in (None, 0) for proc in procs):
                break
            time.sleep(0.05)
        (folder / "go").touch()
    for job, proc in zip(jobs, procs):
        if proc.wait() != 0:
            raise RuntimeError(f"benchmark worker {job['worker']} ({job['kind']}) failed with exit code "
                               f"{proc.returncode}")


def _prepare_folder(folder: Path, xml: str, positions: np.ndarray) -> None:
    (folder / "system.xml").write_text(xml)
    np.save(folder / "positions.npy", np.asarray(positions, dtype=np.float64))


def torch_engine_ns_per_day(xml: str, positions: np.ndarray, n_replicas: int, *, cores: int, timestep_fs: float,
                            hydrogen_mass_amu: float | None, evaluations: int = 400_000) -> dict[str, float]:
    """Aggregate ns/day of ``n_replicas`` torch-engine replicas split over ``min(cores, n_replicas)``
    single-threaded processes, timed together after every process has compiled its kernels."""

    workers = min(cores, n_replicas)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _prepare_folder(folder, xml, positions)
        jobs = []
        for worker, (_, count) in enumerate(ladder_split(n_replicas, workers)):
            steps = int(min(2000, max(20, evaluations // count)))
            jobs.append({"kind": "torch_throughput", "worker": worker, "n_replicas": count, "steps": steps,
                         "timestep_fs": timestep_fs, "hydrogen_mass_amu": hydrogen_mass_amu})
        _run_workers(folder, jobs, barrier=True)
        results = [json.loads((folder / f"result{w}.json").read_text()) for w in range(workers)]
    return {"ns_per_day": sum(r["ns_per_day"] for r in results),
            "evaluations_per_s": sum(r["evaluations_per_s"] for r in results), "processes": workers}


def _phi_positive_estimate(frames: Path, topology, target_relative: float, wall_s: float) -> dict[str, Any]:
    """phi > 0 population of al2-like frames with its block-bootstrap interval, and the wall time a
    run of the same engine would need for a 95 % half-width of ``target_relative`` times the
    population (the half-width shrinks as 1/sqrt(time) once the chains are equilibrated; at least
    two entries into phi > 0 are needed for an estimate). This measures precision only: a run
    that has not yet equilibrated the phi > 0 states is precise about a biased value."""

    samples = read_sample_set(frames)
    dihedrals = backbone_dihedrals(samples.x, topology)
    phi = dihedrals.filter(like="phi_").iloc[:, 0].to_numpy()
    state = conformational_states(dihedrals).iloc[:, 0].to_numpy()
    replica = samples.columns["replica"].to_numpy()
    time_ps = samples.columns["time_ps"].to_numpy()
    positive = phi > 0
    est = bootstrap_population(positive.astype(float), replica, time_ps, n_boot=1000)
    # the same distribution? mean energy and the phi < 0 basins, with their standard errors
    compare = {"mean_energy": samples.energy, "alpha_R": (state == "alpha_R").astype(float),
               "beta": (state == "beta").astype(float)}
    extra = {}
    for name, values in compare.items():
        value = bootstrap_population(values, replica, time_ps, n_boot=500)
        extra[name], extra[f"{name}_se"] = value["population"], value["se"]
    order = np.lexsort((time_ps, replica))
    entries = int(np.sum(positive[order][1:] & ~positive[order][:-1] & (replica[order][1:] == replica[order][:-1])))
    relative = 0.5 * (est["ci_high"] - est["ci_low"]) / est["population"] if est["population"] > 0 else float("nan")
    needed = wall_s * (relative / target_relative) ** 2 if entries >= 2 and relative > 0 else float("nan")
    return {"frames": len(samples), "phi_positive": est["population"], "ci_low": est["ci_low"],
            "ci_high": est["ci_high"], "relative_halfwidth": relative, "entries_to_phi_positive": entries,
            "wall_s": wall_s, "projected_wall_s_to_precision": needed, **extra}


def _race_md_config(md_config: dict[str, Any], race_ladder: dict[str, Any]) -> dict[str, Any]:
    """The md config of the torch side of the race: md's engine settings with the race's ladder."""
    race = {**md_config, "replicas": int(race_ladder["ladders"]),
            "equilibration_ps": float(race_ladder["equilibration_ps"])}
    race["torch"] = {**md_config["torch"], "n_temperatures": int(race_ladder["n_temperatures"]),
                     "max_temperature_K": float(race_ladder["max_temperature_K"]), "temperatures_K": None}
    return race


def plain_dynamics_correlation(phi: np.ndarray) -> dict[str, float]:
    """Population, integrated autocorrelation time and entries of the phi > 0 indicator of
    stationary trajectories ``phi`` ``(frames, replicas)`` 1 ps apart.

    The autocorrelation is pooled over replicas and summed over Geyer's initial positive
    sequence; it can be no longer than the trajectories, so for slow processes it is a lower
    bound of the true correlation time.
    """

    indicator = (np.asarray(phi) > 0).astype(float)
    frames = len(indicator)
    p = float(indicator.mean())
    entries = int(((indicator[1:] > 0) & (indicator[:-1] == 0)).sum())
    if p in (0.0, 1.0):
        return {"phi_positive": p, "tau_ps": float("nan"), "entries": entries}
    d = indicator - p
    rho = np.array([np.mean(d[: frames - k] * d[k:]) for k in range(frames // 2 + 1)]) / np.mean(d * d)
    return {"phi_positive": p, "tau_ps": max(1.0, initial_positive_sequence_tau(rho)), "entries": entries}


def precision_race(xml: str, positions: np.ndarray, temperature: float, topology, md_config: dict[str, Any],
                   *, cores: int, wall_s: float, target_relative: float, openmm_ns_per_day_per_replica: float,
                   torch_ns_per_day: float, race_ladder: dict[str, Any], probe_replicas: int,
                   probe_length_ps: int, log=print) -> pd.DataFrame:
    """Wall time each engine needs for a 95 % half-width of ``target_relative`` times the al2
    phi > 0 population.

    - OpenMM: one replica per core (its best use of the cores), 1 fs, frames every ps, no
      equilibration (in its favour), for ``wall_s``. A few nanoseconds see at most a handful of
      phi > 0 visits, too few for an interval, so its time to precision is projected from the
      statistics of plain dynamics: a time average over ``T`` of an indicator with population
      ``p`` and integrated autocorrelation time ``tau`` has variance ``2 tau p (1 - p) / T``, so
      ``T = (1.96 / r)^2 2 tau (1 - p) / p`` for a relative half-width ``r``, divided by OpenMM's
      ns per wall second on all cores (the faster of the race and ``openmm_ns_per_day_per_replica``
      times the cores). ``tau`` is measured with OpenMM's own settings
      (real masses, 1 fs, same friction) on the torch force field, from ``probe_replicas``
      equilibrium configurations (taken from the torch run) over ``probe_length_ps`` each; a
      ``tau`` as long as that window is a lower bound, which favours OpenMM. ``p`` is the torch
      engine's estimate.
    - torch: parallel tempering with the ladder ``race_ladder`` (ladders, n_temperatures,
      max_temperature_K, equilibration_ps) and md's engine settings, one job per core, for
      about ``wall_s`` including equilibration; its interval is a block bootstrap over the
      independent ladders and its time to precision scales as 1/sqrt(time).
    """
    import mdtraj


    race_md = _race_md_config(md_config, race_ladder)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _prepare_folder(folder, xml, positions)
        # OpenMM
        length_ps = max(1.0, math.floor(wall_s * openmm_ns_per_day_per_replica / 86.4))
        stage = MDSettings(timestep_fs=1.0, equilibration_ps=0.0, length_ps=length_ps, save_interval_ps=1.0,
                           checkpoint_interval_ps=length_ps, platform="Reference", seed=md_config["seed"])
        jobs = [{"kind": "stage", "worker": r, "replica": r, "settings": asdict(stage), "temperature": temperature}
                for r in range(cores)]
        start = time.time()
        _run_workers(folder, jobs, barrier=False)
        openmm_elapsed = time.time() - start
        gather_replicas([folder / f"replica{r}.parquet" for r in range(cores)], folder / "openmm.parquet",
                        target="bench")
        openmm_ns = cores * length_ps * 1e-3
        openmm_row = {"engine": "OpenMM Reference, 1 replica per core", "processes": cores,
                      "simulated_ns": openmm_ns,
                      **_phi_positive_estimate(folder / "openmm.parquet", topology, target_relative, openmm_elapsed)}
        log(f"precision race, OpenMM: {openmm_row}")
        # torch
        per_job = torch_md_settings(race_md, temperature, 0)
        replicas_total = race_md["replicas"] * per_job.n_temperatures
        per_replica_ps_per_s = torch_ns_per_day / replicas_total / 86.4
        save = per_job.save_interval_ps
        length = max(save, math.floor((wall_s * per_replica_ps_per_s - per_job.equilibration_ps) / save) * save)
        jobs_torch = race_md["torch"]["jobs"]
        jobs = []
        for job, (first, _) in enumerate(ladder_split(race_md["replicas"], jobs_torch)):
            settings = replace(torch_md_settings(race_md, temperature, job), length_ps=length,
                               checkpoint_interval_ps=length + per_job.equilibration_ps)
            settings_dict = asdict(settings)
            settings_dict["temperatures_K"] = None
            jobs.append({"kind": "torch_run", "worker": job, "settings": settings_dict, "replica_offset": first})
        start = time.time()
        _run_workers(folder, jobs, barrier=False)
        elapsed = time.time() - start
        gather_replicas([folder / f"torch{j}.parquet" for j in range(jobs_torch)], folder / "torch.parquet",
                        target="bench")
        ladder = ", ".join(f"{t:.0f}" for t in per_job.ladder())
        torch_row = {"engine": f"torch, parallel tempering ({per_job.n_temperatures} temperatures: {ladder} K)",
                     "processes": jobs_torch,
                     "simulated_ns": replicas_total * (length + per_job.equilibration_ps) * 1e-3,
                     "projection": "bootstrap over ladders, 1/sqrt(time)",
                     **_phi_positive_estimate(folder / "torch.parquet", topology, target_relative, elapsed)}
        log(f"precision race, torch: {torch_row}")
        # the plain-dynamics probe, from equilibrium configurations of the torch run
        samples = read_sample_set(folder / "torch.parquet")
        rng = np.random.default_rng(md_config["seed"])
        starts = samples.x[rng.choice(len(samples), size=min(probe_replicas, len(samples)), replace=False)]
        mdtraj.Trajectory(np.asarray(positions, dtype=np.float32).reshape(1, -1, 3), topology).save_pdb(
            str(folder / "topology.pdb"))
        phi_atoms = next(a for name, a in dihedral_atoms(topology).items() if name.startswith("phi_"))
        workers = ladder_split(len(starts), min(cores, len(starts)))
        jobs = []
        for worker, (first, count) in enumerate(workers):
            np.save(folder / f"starts{worker}.npy", starts[first:first + count].astype(np.float64))
            jobs.append({"kind": "plain_probe", "worker": worker, "temperature": temperature,
                         "friction_per_ps": md_config["friction_per_ps"], "seed": md_config["seed"] + worker,
                         "phi_atoms": phi_atoms, "length_ps": int(probe_length_ps)})
        start = time.time()
        _run_workers(folder, jobs, barrier=False)
        probe_elapsed = time.time() - start
        phi = np.concatenate([np.load(folder / f"phi{w}.npy") for w in range(len(workers))], axis=1)
    probe = plain_dynamics_correlation(phi)
    # OpenMM's speed on all cores: the faster of its race and its throughput measurement (one
    # replica per core, perfect scaling), so that a busy moment during the race cannot count
    # against it
    openmm_ns_per_s = max(openmm_ns / openmm_elapsed, cores * openmm_ns_per_day_per_replica / 86400.0)
    p = torch_row["phi_positive"]
    needed_ns = (1.96 / target_relative) ** 2 * 2.0 * probe["tau_ps"] * (1.0 - p) / p * 1e-3 if p > 0 else math.nan
    openmm_row.update({
        "projection": f"plain-dynamics tau >= {probe['tau_ps']:.0f} ps (lower bound: probe window "
                      f"{probe_length_ps} ps), p from torch",
        "projected_wall_s_to_precision": needed_ns / openmm_ns_per_s,
        "probe_tau_ps": probe["tau_ps"], "probe_phi_positive": probe["phi_positive"],
        "probe_entries": probe["entries"], "probe_replicas": phi.shape[1], "probe_length_ps": probe_length_ps,
        "probe_wall_s": probe_elapsed, "projected_simulated_ns": needed_ns,
        "openmm_ns_per_day_all_cores": openmm_ns_per_s * 86400.0})
    log(f"plain-dynamics probe: {probe} from {phi.shape[1]} x {probe_length_ps} ps in {probe_elapsed:.0f} s; "
        f"OpenMM would need {needed_ns:,.0f} ns = {openmm_row['projected_wall_s_to_precision']:,.0f} s")
    frame = pd.DataFrame([openmm_row, torch_row])
    frame["target_relative_halfwidth"] = target_relative
    frame["speedup_vs_openmm"] = openmm_row["projected_wall_s_to_precision"] / frame["projected_wall_s_to_precision"]
    return frame


def bench_md(
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    md: MDSettings,
    *,
    steps: int,
    repeats: int,
    cores: int,
    parquet_rows: int,
    md_config: dict[str, Any] | None = None,
    topology=None,
    torch_replicas: tuple[int, ...] = (),
    torch_evaluations: int = 400_000,
    race_seconds: float = 0.0,
    phi_relative_halfwidth: float = 0.2,
    race_ladder: dict[str, Any] | None = None,
    probe_replicas: int = 512,
    probe_length_ps: int = 120,
    log=print,
) -> pd.DataFrame:
    """Run the benchmark; returns one row per (engine, platform, replicas) with medians.

    With ``md_config`` (the config's ``md`` section, engine ``torch``) it also measures the torch
    engine for each replica count in ``torch_replicas`` (``torch_evaluations`` force evaluations per
    process) and, if ``race_seconds`` > 0, runs
    :func:`precision_race` (``topology``: the mdtraj topology, for phi).

    It measures, on the same machine and in the same process tree:

    - plain OpenMM: one ``Context`` with a Langevin integrator stepping with no I/O, on each
      available platform (the CPU platform with as many threads as the benchmark was given);
    - the MD stage: :func:`boltzflow.md.run_replica` end to end (platform choice, equilibration,
      saving a frame every ``save_interval_ps``, checkpoints, writing Parquet), for one replica and
      for as many replicas in parallel processes as there are cores, as the workflow runs them;
    - the Parquet writer and reader of sample sets, in rows per second.

    Every MD row carries its ratio to the fastest plain single-context OpenMM run.
    """
    rows: list[dict[str, Any]] = []
    platforms = [p for p in available_platforms() if p in ("Reference", "CPU", "CUDA", "OpenCL")]
    for name in platforms:
        threads = cores if name == "CPU" else 1
        values = [measure_ns_per_day(system, positions, temperature, md, name, threads, steps)
                  for _ in range(repeats)]
        log(f"plain OpenMM {name} ({threads} thread(s)): {statistics.median(values):,.0f} ns/day")
        rows.append({"engine": "plain OpenMM context", "platform": name, "replicas": 1,
                     "threads": threads, "ns_per_day": statistics.median(values),
                     "repeats": repeats, "unit": "ns/day"})

    length_ps = steps * md.timestep_fs * 1e-3
    stage = replace(md, length_ps=length_ps, equilibration_ps=0.0,
                    checkpoint_interval_ps=max(md.save_interval_ps, length_ps / 4), platform="auto")
    xml = openmm.XmlSerializer.serialize(system)
    for replicas in sorted({1, cores}):
        values = [_stage_ns_per_day(xml, positions, temperature, stage, replicas) for _ in range(repeats)]
        log(f"MD stage, {replicas} replica(s) in parallel: {statistics.median(values):,.0f} ns/day")
        rows.append({"engine": "boltzflow MD stage (run_replica)", "platform": "auto",
                     "replicas": replicas, "threads": replicas,
                     "ns_per_day": statistics.median(values), "repeats": repeats, "unit": "ns/day"})

    for row in rows:
        row["timestep_fs"] = md.timestep_fs
    if md_config is not None:
        for n_replicas in torch_replicas:
            result = torch_engine_ns_per_day(xml, positions, n_replicas, cores=cores,
                                             timestep_fs=md_config["timestep_fs"],
                                             hydrogen_mass_amu=md_config["torch"]["hydrogen_mass_amu"],
                                             evaluations=torch_evaluations)
            log(f"torch engine, {n_replicas} replicas in {result['processes']} process(es): "
                f"{result['ns_per_day']:,.0f} ns/day ({result['evaluations_per_s']:,.0f} force evaluations/s)")
            rows.append({"engine": "torch engine (BAOAB, batched)", "platform": "cpu", "replicas": n_replicas,
                         "threads": result["processes"], "ns_per_day": result["ns_per_day"], "repeats": 1,
                         "unit": "ns/day", "timestep_fs": md_config["timestep_fs"]})

    frame = pd.DataFrame(rows)
    plain = frame[frame.engine == "plain OpenMM context"]
    best = plain.loc[plain.ns_per_day.idxmax()]
    frame["ratio_vs_best_plain"] = frame.ns_per_day / best.ns_per_day
    frame["baseline"] = f"plain OpenMM {best.platform}, 1 context"
    # OpenMM on every core: the best single context times the number of cores (ideal scaling)
    frame["ratio_vs_openmm_all_cores"] = frame.ns_per_day / (best.ns_per_day * cores)
    frame["steps_per_s_all_replicas"] = frame.ns_per_day / 86400.0 / (frame.timestep_fs * 1e-6)

    n_atoms = system.getNumParticles()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(parquet_rows, 3 * n_atoms)).astype(np.float32)
    energy = rng.normal(size=parquet_rows)
    write_rates, read_rates = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.parquet"
        for _ in range(repeats):
            start = time.perf_counter()
            write_sample_set(path, x, energy, target="bench", units="nm",
                             extra={"replica": np.zeros(parquet_rows, np.int32),
                                    "time_ps": np.arange(parquet_rows, dtype=np.float64)})
            write_rates.append(parquet_rows / (time.perf_counter() - start))
            start = time.perf_counter()
            read_sample_set(path)
            read_rates.append(parquet_rows / (time.perf_counter() - start))
    log(f"Parquet sample sets: write {statistics.median(write_rates):,.0f} rows/s, "
        f"read {statistics.median(read_rates):,.0f} rows/s (dim {3 * n_atoms})")
    io_rows = pd.DataFrame([
        {"engine": f"Parquet writer (dim {3 * n_atoms})", "platform": "-", "replicas": 0, "threads": 1,
         "rows_per_s": statistics.median(write_rates), "repeats": repeats, "unit": "rows/s"},
        {"engine": f"Parquet reader (dim {3 * n_atoms})", "platform": "-", "replicas": 0, "threads": 1,
         "rows_per_s": statistics.median(read_rates), "repeats": repeats, "unit": "rows/s"},
    ])
    frame = pd.concat([frame, io_rows], ignore_index=True)
    if md_config is not None and race_seconds > 0:
        torch_rows = frame[frame.engine.str.startswith("torch")]
        per_replica = frame[frame.engine == "boltzflow MD stage (run_replica)"]
        openmm_rate = float((per_replica.ns_per_day / per_replica.replicas).max())

        race_ladder = race_ladder or {"ladders": md_config["replicas"], "n_temperatures": md_config["torch"][
            "n_temperatures"], "max_temperature_K": md_config["torch"]["max_temperature_K"],
            "equilibration_ps": md_config["equilibration_ps"]}
        race_md = _race_md_config(md_config, race_ladder)
        needed = race_md["replicas"] * torch_md_settings(race_md, temperature, 0).n_temperatures
        rate = float(np.interp(needed, torch_rows.replicas, torch_rows.ns_per_day)) if len(torch_rows) else \
            torch_engine_ns_per_day(xml, positions, needed, cores=cores, timestep_fs=md_config["timestep_fs"],
                                    hydrogen_mass_amu=md_config["torch"]["hydrogen_mass_amu"])["ns_per_day"]
        race = precision_race(xml, positions, temperature, topology, md_config, cores=cores, wall_s=race_seconds,
                              target_relative=phi_relative_halfwidth, openmm_ns_per_day_per_replica=openmm_rate,
                              torch_ns_per_day=rate, race_ladder=race_ladder, probe_replicas=probe_replicas,
                              probe_length_ps=probe_length_ps, log=log)
        race["unit"] = "s"
        frame = pd.concat([frame, race], ignore_index=True)
    return frame


def write_markdown_report(path, title: str, notes: list[str], table: pd.DataFrame, columns: list[str],
                          meta: dict, target: str) -> None:
    """A benchmark's Markdown page, written atomically: the title, ``notes`` as bullets, the machine
    and commit (from the provenance ``meta``), the command that reruns ``target``, then the table."""
    lines = [f"# {title}", "", *(f"- {note}" for note in notes),
             f"- machine {meta['machine']}; git {meta['git_commit']}",
             f"- reproduce: snakemake --cores all {target}", "", *markdown_rows(table, columns)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def markdown_rows(frame: pd.DataFrame, cols: list[str]) -> list[str]:
    cols = [c for c in cols if c in frame]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                if np.isnan(v):
                    cells.append("")
                elif c.startswith("ratio"):
                    cells.append(f"{v:.2f}")
                elif c in ("phi_positive", "ci_low", "ci_high", "relative_halfwidth", "alpha_R", "beta", "mean_energy"):
                    cells.append(f"{v:.4f}")
                elif c == "timestep_fs":
                    cells.append(f"{v:g}")
                elif c == "simulated_ns":
                    cells.append(f"{v:,.1f}")
                else:
                    cells.append(f"{v:,.0f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_table(frame: pd.DataFrame, title: str, notes: list[str]) -> str:
    """A Markdown report of :func:`bench_md`: MD throughput, the precision race, Parquet I/O."""
    lines = [f"# {title}", ""] + [f"- {n}" for n in notes] + [""]
    md_rows = frame[frame.unit == "ns/day"]
    lines += ["## Throughput", ""]
    lines += markdown_rows(md_rows, ["engine", "platform", "replicas", "threads", "timestep_fs", "ns_per_day",
                                      "steps_per_s_all_replicas", "ratio_vs_best_plain",
                                      "ratio_vs_openmm_all_cores", "repeats"])
    race = frame[frame.unit == "s"]
    if len(race):
        lines += ["", "## Time to a precise phi > 0 population (al2)", "",
                  "Each engine runs for about the same wall time on the same cores. Wall time to a 95 % "
                  f"half-width of {race.target_relative_halfwidth.iloc[0]:g} times the phi > 0 population: "
                  "torch, from its block-bootstrap interval over independent ladders (the half-width shrinks "
                  "as 1/sqrt(time)); OpenMM, whose run sees too few phi > 0 visits for an interval, from "
                  "T = (1.96 / r)^2 2 tau (1 - p) / p, with tau the integrated autocorrelation time of the "
                  "phi > 0 indicator under plain dynamics with OpenMM's settings (1 fs, real masses), "
                  "measured from equilibrium starts (probe columns; a lower bound when it reaches the probe "
                  "window, which favours OpenMM), and OpenMM's measured ns per second on all cores. This is "
                  "precision only: a run that has not equilibrated phi > 0 is precise about a biased value.",
                  ""]
        lines += markdown_rows(race, ["engine", "processes", "wall_s", "simulated_ns", "frames", "phi_positive",
                                       "ci_low", "ci_high", "relative_halfwidth", "entries_to_phi_positive",
                                       "projected_wall_s_to_precision", "speedup_vs_openmm"])
        probe = race[race.engine.str.startswith("OpenMM")]
        if "probe_tau_ps" in probe and len(probe):
            r = probe.iloc[0]
            replicas = f"{int(r.probe_replicas)} replica{'s' if int(r.probe_replicas) != 1 else ''}"
            lines += ["", f"Plain-dynamics probe: {replicas} x {int(r.probe_length_ps)} ps "
                      f"from torch equilibrium frames ({r.probe_wall_s:,.0f} s): phi > 0 population "
                      f"{r.probe_phi_positive:.4f}, {int(r.probe_entries)} entries, tau >= {r.probe_tau_ps:.0f} ps; "
                      f"OpenMM needs {r.projected_simulated_ns:,.0f} ns at {r.openmm_ns_per_day_all_cores:,.0f} "
                      "ns/day on all cores (the faster of its race and its throughput rows)."]
        if "mean_energy" in race and len(race) == 2:
            a, b = race.iloc[0], race.iloc[1]
            lines += ["", "Same distribution? (standard errors from block bootstraps over chains; z = difference / "
                      "combined standard error)", "", "| quantity | " + " | ".join(race.engine) + " | z |",
                      "|---|---|---|---|"]
            for name in ("mean_energy", "alpha_R", "beta"):
                z = (a[name] - b[name]) / math.hypot(a[f"{name}_se"], b[f"{name}_se"])
                lines.append(f"| {name} | {a[name]:.4f} +- {a[f'{name}_se']:.4f} | "
                             f"{b[name]:.4f} +- {b[f'{name}_se']:.4f} | {z:.2f} |")
    io_rows = frame[frame.unit == "rows/s"]
    lines += ["", "## Parquet sample sets", ""]
    lines += markdown_rows(io_rows, ["engine", "rows_per_s", "repeats"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _worker(sys.argv[1])
