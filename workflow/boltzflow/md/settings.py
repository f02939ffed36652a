"""Settings of the torch MD engine: time step, thermostat, temperature ladder, run length and output;
the config's ``md`` section as one job's settings (:func:`torch_md_settings`, :func:`ladder_split`),
and the per-replica seed both engines use (:func:`replica_seed`). Torch-free, so that config checks
and OpenMM jobs load it cheaply.

The dataclass :class:`TorchMDSettings` is validated on construction and derives the step counts
that :func:`boltzflow.md.tempering.run_parallel_tempering` follows.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["TorchMDSettings", "geometric_ladder", "replica_seed", "ladder_split", "torch_md_settings"]

DTYPES = ("float32", "float64")  # the torch dtypes the engine can integrate in


def geometric_ladder(t_min: float, t_max: float, n: int) -> np.ndarray:
    """``n`` temperatures from ``t_min`` to ``t_max`` with a constant ratio (``[t_min]`` if n = 1)."""
    if n == 1:
        return np.array([float(t_min)])
    return float(t_min) * (float(t_max) / float(t_min)) ** (np.arange(n) / (n - 1))




def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class TorchMDSettings:
    """Settings of a torch MD / parallel-tempering run (see the module docstring).

    ``n_temperatures = 1`` is plain Langevin dynamics of ``n_ladders`` independent replicas.
    With more, the ladder is ``temperatures_K`` if given (it must start at ``temperature_K`` and
    increase), else geometric from ``temperature_K`` to ``max_temperature_K``.

    >>> s = TorchMDSettings(n_ladders=2, n_temperatures=3, max_temperature_K=600.0, length_ps=10.0)
    >>> [round(t) for t in s.ladder()], s.n_replicas, s.steps_per_frame, s.total_steps
    ([300, 424, 600], 6, 500, 55000)
    """

    temperature_K: float = 300.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    hydrogen_mass_amu: float | None = 3.0
    n_ladders: int = 64
    n_temperatures: int = 1
    max_temperature_K: float | None = None
    temperatures_K: tuple[float, ...] | None = None
    exchange_interval_ps: float = 1.0
    equilibration_ps: float = 100.0
    length_ps: float = 1000.0
    save_interval_ps: float = 1.0
    checkpoint_interval_ps: float = 100.0
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    compile: bool | str = "auto"
    save_all_temperatures: bool = False

    @classmethod
    def from_config(cls, md: Mapping[str, Any]) -> "TorchMDSettings":
        """Settings from a config mapping; keys that are not fields are ignored."""
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in md.items() if k in fields})

    def __post_init__(self) -> None:
        if self.temperatures_K is not None and not isinstance(self.temperatures_K, tuple):
            if isinstance(self.temperatures_K, (str, bytes)) or not hasattr(self.temperatures_K, "__iter__"):
                raise ValueError(f"temperatures_K must be a list of temperatures, got {self.temperatures_K!r}")
            object.__setattr__(self, "temperatures_K", tuple(self.temperatures_K))
        for name in ("temperature_K", "timestep_fs", "length_ps", "save_interval_ps", "checkpoint_interval_ps"):
            _positive(name, getattr(self, name))
        _positive("friction_per_ps", self.friction_per_ps, allow_zero=True)
        _positive("equilibration_ps", self.equilibration_ps, allow_zero=True)
        if self.hydrogen_mass_amu is not None:
            _positive("hydrogen_mass_amu", self.hydrogen_mass_amu)
        for name in ("n_ladders", "n_temperatures"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not (
                self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ValueError(f"compile must be true, false or 'auto', got {self.compile!r}")
        if not isinstance(self.save_all_temperatures, bool):
            raise ValueError(f"save_all_temperatures must be true or false, got {self.save_all_temperatures!r}")
        self.ladder()  # validates the ladder fields
        self.steps_per_frame  # noqa: B018 - validates save_interval_ps
        if self.n_temperatures > 1:
            self.exchange_steps  # noqa: B018 - validates exchange_interval_ps
        if self.n_frames < 1:
            raise ValueError(f"length_ps={self.length_ps} is shorter than save_interval_ps={self.save_interval_ps}")

    # ---- derived quantities ----

    def ladder(self) -> np.ndarray:
        """The ``n_temperatures`` temperatures (K) of a ladder, the target first."""
        K = self.n_temperatures
        if self.temperatures_K is not None:
            temps = self.temperatures_K
            if len(temps) != K:
                raise ValueError(f"temperatures_K has {len(temps)} entries but n_temperatures is {K}")
            for t in temps:
                _positive("temperatures_K", t)
            if abs(temps[0] - self.temperature_K) > 1e-9 * self.temperature_K:
                raise ValueError(f"temperatures_K must start at temperature_K={self.temperature_K}, got {temps[0]}")
            if any(b <= a for a, b in zip(temps, temps[1:])):
                raise ValueError(f"temperatures_K must increase strictly, got {list(temps)}")
            return np.array(temps, dtype=np.float64)
        if K == 1:
            return np.array([float(self.temperature_K)])
        if self.max_temperature_K is None:
            raise ValueError(f"max_temperature_K (or temperatures_K) is required with n_temperatures={K}")
        _positive("max_temperature_K", self.max_temperature_K)
        if self.max_temperature_K <= self.temperature_K:
            raise ValueError(f"max_temperature_K={self.max_temperature_K} must exceed "
                             f"temperature_K={self.temperature_K}")
        return geometric_ladder(self.temperature_K, self.max_temperature_K, K)

    def _whole_steps(self, name: str) -> int:
        ps = getattr(self, name)
        steps = int(round(ps * 1000.0 / self.timestep_fs))
        if steps < 1 or abs(steps * self.timestep_fs - ps * 1000.0) > 1e-6:
            raise ValueError(f"{name}={ps} is not a whole number of time steps of {self.timestep_fs} fs")
        return steps

    @property
    def steps_per_frame(self) -> int:
        return self._whole_steps("save_interval_ps")

    @property
    def exchange_steps(self) -> int:
        return self._whole_steps("exchange_interval_ps")

    @property
    def checkpoint_steps(self) -> int:
        return max(1, int(round(self.checkpoint_interval_ps * 1000.0 / self.timestep_fs)))

    @property
    def equilibration_steps(self) -> int:
        return int(round(self.equilibration_ps * 1000.0 / self.timestep_fs))

    @property
    def n_frames(self) -> int:
        """Frames per saved slot (per ladder at the target temperature)."""
        return int(round(self.length_ps / self.save_interval_ps))

    @property
    def total_steps(self) -> int:
        return self.equilibration_steps + self.n_frames * self.steps_per_frame

    @property
    def n_replicas(self) -> int:
        return self.n_ladders * self.n_temperatures

    def trajectory_dict(self) -> dict[str, Any]:
        """The settings that determine the trajectory (not where it runs or how often it checkpoints)."""
        d = asdict(self)
        for key in ("checkpoint_interval_ps", "device", "compile"):
            d.pop(key)
        d["temperatures_K"] = [float(t) for t in self.ladder()]
        return d


def replica_seed(seed: int, replica: int) -> int:
    """A positive 31-bit seed for replica ``replica`` (OpenMM treats 0 as 'pick at random')."""
    return zlib.crc32(f"{seed}:{replica}".encode()) % (2**31 - 2) + 1


def ladder_split(n_ladders: int, jobs: int) -> list[tuple[int, int]]:
    """``(first, count)`` of the ladders of each job: ``n_ladders`` split as evenly as possible."""
    if jobs < 1 or n_ladders < jobs:
        raise ValueError(f"cannot split {n_ladders} ladders over {jobs} jobs")
    base, extra = divmod(n_ladders, jobs)
    out, first = [], 0
    for job in range(jobs):
        count = base + (1 if job < extra else 0)
        out.append((first, count))
        first += count
    return out


def torch_md_settings(md: Mapping[str, Any], temperature_K: float, job: int = 0):
    """The :class:`~boltzflow.md.settings.TorchMDSettings` of job ``job`` of the config section ``md``
    (engine ``torch``) for a system at ``temperature_K``: its share of the ladders and its own seed."""

    options = dict(md["torch"])
    jobs = options.pop("jobs")
    options.pop("threads_per_job")
    _, count = ladder_split(md["replicas"], jobs)[job]
    shared = {key: md[key] for key in ("timestep_fs", "friction_per_ps", "equilibration_ps", "length_ps",
                                       "save_interval_ps", "checkpoint_interval_ps")}
    return TorchMDSettings(temperature_K=float(temperature_K), n_ladders=count,
                           seed=replica_seed(md["seed"], job), **shared, **options)
