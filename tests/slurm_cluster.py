"""A throwaway single-node SLURM cluster for tests.

This module is a helper, not a test file.  It starts munge (only when no
munged is answering already), ``slurmctld`` and ``slurmd`` on this machine,
with every piece of configuration and state kept in a private folder, and
stops exactly the processes it started again.

The system configuration (``/etc/slurm/slurm.conf``) is never written: the
daemons get ``-f <private slurm.conf>`` and client commands (sbatch, squeue,
scancel, sinfo, scontrol, srun, snakemake's SLURM executor) find the private
cluster through the ``SLURM_CONF`` variable in :attr:`LocalSlurm.env`.  The
cluster listens on free ports picked at start, so a real cluster on the same
host is left alone.

Typical use::

    from slurm_cluster import LocalSlurm, require_slurm_or_skip

    def test_something(tmp_path):
        require_slurm_or_skip()
        with LocalSlurm(tmp_path / "slurm") as cluster:
            subprocess.run(["sbatch", "--wrap", "true"], env=cluster.subprocess_env())

or, sharing one cluster per test session, request the ``local_slurm``
fixture defined at the bottom of this module (imported by ``conftest.py``).

Needs the Debian packages ``slurm-wlm`` and ``munge`` and root privileges.
Tests that need SLURM are skipped when it is missing, unless the environment
variable ``BOLTZFLOW_REQUIRE_SLURM=1`` is set, which turns the skip into a
failure (what CI wants).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

REQUIRE_ENV_VAR = "BOLTZFLOW_REQUIRE_SLURM"
INSTALL_HINT = (
    "install the Debian packages slurm-wlm and munge "
    "(apt-get install slurm-wlm munge, see .ci/install_slurm.sh) and run as root"
)

# Programs the helper (or snakemake's SLURM executor) runs.
_SLURM_PROGRAMS = (
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "sinfo",
    "scancel",
    "scontrol",
    "srun",
)
_MUNGE_PROGRAMS = ("munged", "munge", "unmunge")
# Client commands that get a SLURM_CONF-setting wrapper (see
# LocalSlurm._write_client_wrappers); missing ones are left out.
_CLIENT_PROGRAMS = (
    "srun",
    "sbatch",
    "salloc",
    "sattach",
    "squeue",
    "scancel",
    "sinfo",
    "scontrol",
    "sacct",
    "sstat",
    "sprio",
    "sshare",
    "sdiag",
)

MUNGE_USER = "munge"
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN_DIR = Path("/run/munge")
MUNGE_LOG_DIR = Path("/var/log/munge")
MUNGE_LIB_DIR = Path("/var/lib/munge")

# Job variables that leak in when the tests themselves run inside a SLURM
# allocation of some real cluster; they would confuse sbatch/srun pointed at
# the private cluster.
_SLURM_JOB_VARS_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")


# Command-line flags for ``snakemake`` to run jobs on this cluster through
# the SLURM executor plugin (tested with snakemake-executor-plugin-slurm
# 2.8.0).  There is no accounting database (AccountingStorageType=none), so:
#   --slurm-no-account          no account on sbatch (2.8.0 still tries to
#                               guess one with sacct, fails quietly and
#                               submits without -A);
#   --slurm-status-command squeue
#                               job states from squeue, as sacct cannot answer
#                               without accounting.  The plugin only honours
#                               squeue while MinJobAge >= 3 x the initial
#                               status interval, otherwise it silently falls
#                               back to sacct and jobs never finish;
#   the two interval flags      poll every 2 s instead of 40 s.
SNAKEMAKE_SLURM_FLAGS = [
    "--executor",
    "slurm",
    "--slurm-no-account",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--seconds-between-status-checks",
    "2",
]


class LocalSlurmError(RuntimeError):
    """The local cluster could not be started (the message has log tails)."""


# --------------------------------------------------------------------------
# availability checks
# --------------------------------------------------------------------------


def slurm_installed() -> str | None:
    """Return None when a local cluster can be started here, else the reason."""
    for program in _SLURM_PROGRAMS + _MUNGE_PROGRAMS:
        if shutil.which(program) is None:
            return f"{program} not found; {INSTALL_HINT}"
    if os.geteuid() != 0:
        return (
            "starting a local SLURM cluster needs root (the daemons run as root "
            f"and munged as the {MUNGE_USER} user); {INSTALL_HINT}"
        )
    try:
        pwd.getpwnam(MUNGE_USER)
    except KeyError:
        return f"the '{MUNGE_USER}' user does not exist; {INSTALL_HINT}"
    return None


def slurm_required() -> bool:
    """True when BOLTZFLOW_REQUIRE_SLURM asks for SLURM tests to never skip."""
    return os.environ.get(REQUIRE_ENV_VAR, "").strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }


def require_slurm_or_skip() -> None:
    """Skip the calling test when SLURM is unusable, or fail it if required.

    With ``BOLTZFLOW_REQUIRE_SLURM=1`` a missing SLURM is a test failure,
    never a skip.
    """
    reason = slurm_installed()
    if reason is None:
        return
    if slurm_required():
        pytest.fail(f"{REQUIRE_ENV_VAR}=1 but SLURM is not usable: {reason}", pytrace=False)
    pytest.skip(f"{reason} (set {REQUIRE_ENV_VAR}=1 to make this a failure)")


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<unreadable: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _set_parent_death_signal() -> None:
    """Child-side hook: get SIGTERM when the test process dies.

    A safety net so that a pytest run killed with SIGKILL does not leave
    daemons behind.  Best effort: ignored where prctl is unavailable.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except Exception:  # pragma: no cover - best effort only
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM one process we started, SIGKILL it if it lingers, reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def _munge_works() -> bool:
    """Does a running munged encode and decode a credential?"""
    try:
        cred = subprocess.run(
            ["munge", "-n"], capture_output=True, timeout=10, check=True
        ).stdout
        subprocess.run(
            ["unmunge"], input=cred, capture_output=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _munged_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "munged":
            found.append(int(entry.name))
    return found


def _own_by(path: Path, uid: int, gid: int, *, bad_bits: int, mode: int) -> None:
    """Give ``path`` to uid/gid and drop to ``mode`` if any ``bad_bits`` set."""
    info = path.stat()
    if info.st_uid != uid:
        os.chown(path, uid, gid)
    if info.st_mode & bad_bits:
        os.chmod(path, mode)


def _total_memory_mb() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise LocalSlurmError("cannot read MemTotal from /proc/meminfo")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def slurm_version() -> tuple[int, ...]:
    """The installed SLURM version, e.g. (22, 5, 8); () if unknown."""
    try:
        out = subprocess.run(
            ["slurmctld", "-V"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else ()


def _node_hardware() -> dict[str, int]:
    """CPU layout and memory as slurmd itself sees them (``slurmd -C``).

    Configuring exactly what slurmd detects keeps the node from being set to
    INVALID for a topology mismatch.
    """
    hw = {"CPUs": _cpu_count(), "RealMemory": _total_memory_mb()}
    try:
        out = subprocess.run(
            ["slurmd", "-C"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    keys = (
        "CPUs",
        "Boards",
        "SocketsPerBoard",
        "CoresPerSocket",
        "ThreadsPerCore",
        "RealMemory",
    )
    for key in keys:
        match = re.search(rf"\b{key}=(\d+)", out)
        if match:
            hw[key] = int(match.group(1))
    # Leave some head room so slurmd never reports less memory than configured.
    total = min(hw["RealMemory"], _total_memory_mb())
    hw["RealMemory"] = max(256, int(total * 0.9))
    return hw


# --------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------


class LocalSlurm:
    """A private single-node SLURM cluster: ``with LocalSlurm(dir) as cluster``.

    Attributes available after start:

    ``env``
        Variables to add to the environment of client commands and of
        snakemake: ``SLURM_CONF`` (the private slurm.conf) and ``PATH`` (with
        a folder of SLURM_CONF-setting client wrappers first, see
        :meth:`_write_client_wrappers`).  :meth:`subprocess_env` gives
        ``os.environ`` merged with it, ready for
        ``subprocess.run(..., env=...)``.
    ``conf_path``, ``nodename``, ``partition``, ``cpus``, ``memory_mb``
        What the cluster looks like.
    ``pids``
        Process ids of the daemons this object started (and will stop);
        munged is only listed when it was not running already.
    ``munged_reused``
        True when a munged that was already running is used (and left
        running on exit).
    """

    partition = "debug"

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        *,
        cluster_name: str = "boltzflowtest",
        startup_timeout: float = 60.0,
        debug_level: str = "info",
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(
            tempfile.mkdtemp(prefix="boltzflow-slurm-") if workdir is None else workdir
        ).resolve()
        self.cluster_name = cluster_name
        self.startup_timeout = startup_timeout
        self.debug_level = debug_level
        self.nodename = socket.gethostname().split(".")[0]
        self.conf_path = self.workdir / "slurm.conf"
        self.log_dir = self.workdir / "log"
        self.state_dir = self.workdir / "state"
        self.spool_dir: Path | None = None
        self.bin_dir = self.workdir / "bin"
        self.env: dict[str, str] = {"SLURM_CONF": str(self.conf_path)}
        self.cpus = 0
        self.memory_mb = 0
        self.ctld_port = 0
        self.slurmd_port = 0
        self._slurmctld: subprocess.Popen | None = None
        self._slurmd: subprocess.Popen | None = None
        self._munged: subprocess.Popen | None = None
        self.munged_reused = False
        self._stdio_files: list = []
        self._started = False

    # -- public API ---------------------------------------------------------

    def __enter__(self) -> "LocalSlurm":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        procs = {
            "slurmctld": self._slurmctld,
            "slurmd": self._slurmd,
            "munged": self._munged,
        }
        return {name: proc.pid for name, proc in procs.items() if proc is not None}

    def subprocess_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """``os.environ`` without job variables of an outer SLURM allocation,
        plus :attr:`env` (and ``extra``)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(_SLURM_JOB_VARS_PREFIXES)
        }
        env.update(self.env)
        if extra:
            env.update(extra)
        return env

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a client command against this cluster (text output captured)."""
        kwargs.setdefault("env", self.subprocess_env())
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60)
        return subprocess.run(args, **kwargs)

    def start(self) -> None:
        if self._started:
            return
        reason = slurm_installed()
        if reason:
            raise LocalSlurmError(reason)
        self._started = True
        atexit.register(self.stop)
        try:
            self._prepare_dirs()
            self._ensure_munge()
            self._write_config()
            self._write_client_wrappers()
            self._start_daemons()
            self.wait_until_idle(self.startup_timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the daemons this object started; leave everything else alone."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._slurmctld is not None and self._slurmctld.poll() is None:
            self._cancel_all_jobs()
        for attr in ("_slurmd", "_slurmctld", "_munged"):
            proc = getattr(self, attr)
            if proc is not None:
                _stop_process(proc)
        for handle in self._stdio_files:
            with contextlib.suppress(OSError):
                handle.close()
        self._stdio_files.clear()
        if self.spool_dir is not None:
            shutil.rmtree(self.spool_dir, ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_files(self) -> list[Path]:
        """Daemon logs worth showing.

        ``<daemon>.stdout`` (what a foreground daemon printed) duplicates
        ``<daemon>.log`` once the daemon opened its log file, so it is only
        listed when the log file is missing or empty, e.g. after a config
        error.  munged runs in the foreground and logs to munged.stdout.
        """
        if not self.log_dir.is_dir():
            return []
        files = []
        for path in sorted(self.log_dir.glob("*")):
            if path.suffix == ".stdout":
                log = path.with_suffix(".log")
                if log.exists() and log.stat().st_size:
                    continue
            files.append(path)
        return files

    def logs_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of each daemon log, for error messages."""
        parts = []
        for path in self.log_files():
            if path.exists() and path.stat().st_size:
                parts.append(f"----- {path} (last {lines} lines) -----\n{_tail(path, lines)}")
        return "\n".join(parts) if parts else "(no daemon logs written)"

    def node_state(self) -> str:
        """Long node state as sinfo shows it, e.g. 'idle', or '' if unknown."""
        result = self.run(
            ["sinfo", "--noheader", "--Node", "--format=%N %T"], timeout=15
        )
        if result.returncode != 0:
            return ""
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] == self.nodename:
                return fields[1]
        return ""

    def wait_until_idle(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for name, proc in (("slurmctld", self._slurmctld), ("slurmd", self._slurmd)):
                if proc is not None and proc.poll() is not None:
                    raise LocalSlurmError(
                        f"{name} exited with status {proc.returncode} during "
                        f"startup.\n{self.logs_tail()}"
                    )
            state = self.node_state()
            if state in ("idle", "mixed"):
                return
            if state.startswith("inval"):
                # Configuration and hardware disagree; this does not heal.
                reasons = self.run(["sinfo", "--list-reasons", "--noheader", "--format=%N %T: %E"], timeout=15)
                raise LocalSlurmError(
                    f"node {self.nodename} is INVALID:\n{reasons.stdout}"
                    f"\n{self.logs_tail()}"
                )
            time.sleep(0.5)
        raise LocalSlurmError(
            f"node {self.nodename} not idle after {timeout:.0f} s "
            f"(sinfo state: {state or 'no answer'}).\n{self.logs_tail()}"
        )

    def wait_for_jobs(self, timeout: float = 60.0) -> None:
        """Wait until the queue holds no pending or running job."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.run(
                ["squeue", "--noheader", "--states=PD,R,CG,CF", "--format=%i"],
                timeout=15,
            )
            if result.returncode == 0 and not result.stdout.strip():
                return
            time.sleep(0.5)
        raise LocalSlurmError(f"jobs still queued after {timeout:.0f} s")

    # -- internals ----------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir()
        # slurmd puts unix sockets into its spool folder; their paths must
        # stay below ~108 bytes, so the spool gets a short private folder.
        self.spool_dir = Path(tempfile.mkdtemp(prefix="bfslurmd-", dir="/tmp"))

    def _ensure_munge(self) -> None:
        if _munge_works():
            self.munged_reused = True
            return
        running = _munged_pids()
        if running:
            raise LocalSlurmError(
                f"munged is running (pids {running}) but 'munge -n | unmunge' "
                "fails; fix or stop it before running the SLURM tests"
            )
        user = pwd.getpwnam(MUNGE_USER)
        group_id = user.pw_gid
        # munged refuses to start unless these belong to the munge user and
        # are not writable by group or others; only fix what is off, so an
        # existing munge setup keeps its own modes.
        for folder, mode in (
            (MUNGE_KEY.parent, 0o700),
            (MUNGE_RUN_DIR, 0o755),
            (MUNGE_LOG_DIR, 0o700),
            (MUNGE_LIB_DIR, 0o711),
        ):
            if not folder.is_dir():
                folder.mkdir(parents=True)
                os.chmod(folder, mode)
            _own_by(folder, user.pw_uid, group_id, bad_bits=0o022, mode=mode)
        if not MUNGE_KEY.exists():
            created = subprocess.run(
                ["mungekey", "--create", f"--keyfile={MUNGE_KEY}"],
                capture_output=True,
                text=True,
            )
            if created.returncode != 0 or not MUNGE_KEY.exists():
                MUNGE_KEY.write_bytes(os.urandom(1024))
            os.chmod(MUNGE_KEY, 0o400)
        _own_by(MUNGE_KEY, user.pw_uid, group_id, bad_bits=0o077, mode=0o400)

        stdio = open(self.log_dir / "munged.stdout", "ab")
        self._stdio_files.append(stdio)
        self._munged = subprocess.Popen(
            # --force: step over a stale socket left by a munged that died.
            ["munged", "--foreground", "--force"],
            stdin=subprocess.DEVNULL,
            stdout=stdio,
            stderr=subprocess.STDOUT,
            user=user.pw_uid,
            group=group_id,
            extra_groups=[],
            start_new_session=True,
            preexec_fn=_set_parent_death_signal,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._munged.poll() is not None:
                break
            if _munge_works():
                return
            time.sleep(0.2)
        raise LocalSlurmError(f"munged did not come up.\n{self.logs_tail()}")

    def _write_config(self) -> None:
        hw = _node_hardware()
        self.cpus = hw["CPUs"]
        self.memory_mb = hw["RealMemory"]
        self.ctld_port = _free_port()
        self.slurmd_port = _free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = _free_port()
        topology = " ".join(
            f"{key}={hw[key]}"
            for key in ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
            if key in hw
        )
        version = slurm_version()
        # select/cons_tres arrived in 19.05 (cons_res left in 23.11).
        select_type = (
            "select/cons_res" if version and version < (19, 5) else "select/cons_tres"
        )
        if version >= (24, 5):
            # cgroup.conf sits next to slurm.conf.  From 24.05 on its plugin
            # can be switched off, so slurmd never touches cgroups (which a
            # container may not allow); older releases lack that value and
            # need no cgroup.conf with the plugins chosen here.
            (self.workdir / "cgroup.conf").write_text("CgroupPlugin=disabled\n")
        plugstack = self.workdir / "plugstack.conf"
        plugstack.write_text("# no SPANK plugins for the test cluster\n")
        log = self.log_dir
        lines = [
            "# Written by tests/slurm_cluster.py for a throwaway test cluster.",
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={self.nodename}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "SlurmUser=root",
            "SlurmdUser=root",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SchedulerType=sched/builtin",
            f"SelectType={select_type}",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=256",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "PropagateResourceLimits=NONE",
            "MailProg=/bin/true",
            f"PlugStackConfig={plugstack}",
            f"StateSaveLocation={self.state_dir}",
            f"SlurmdSpoolDir={self.spool_dir}",
            f"SlurmctldPidFile={self.state_dir / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.state_dir / 'slurmd.pid'}",
            f"SlurmctldLogFile={log / 'slurmctld.log'}",
            f"SlurmdLogFile={log / 'slurmd.log'}",
            f"SlurmctldDebug={self.debug_level}",
            f"SlurmdDebug={self.debug_level}",
            # Fast turnaround: a down node comes back by itself, and jobs are
            # killed quickly when cancelled.
            "ReturnToService=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=5",
            "Waittime=0",
            "MessageTimeout=10",
            # Keep finished jobs visible to squeue for 5 minutes: snakemake's
            # SLURM executor reads job states with squeue here (there is no
            # accounting for sacct), and a job that vanishes before the
            # executor saw it finish would be waited for forever.
            "MinJobAge=300",
            (
                f"NodeName={self.nodename} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                f"{topology} RealMemory={self.memory_mb} State=UNKNOWN"
            ).replace("  ", " "),
            f"PartitionName={self.partition} Nodes=ALL Default=YES "
            "MaxTime=INFINITE State=UP",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def _write_client_wrappers(self) -> None:
        """Put ``SLURM_CONF``-setting wrappers of the client commands on PATH.

        snakemake's slurm-jobstep executor (inside each job) strips every
        ``SLURM_*`` variable except the job identity ones before it calls
        ``srun``, so the nested srun would lose ``SLURM_CONF`` and look for
        /etc/slurm/slurm.conf or a DNS SRV record instead.  The wrappers fill
        in ``SLURM_CONF`` when it is missing and run the real program.
        """
        self.bin_dir.mkdir(exist_ok=True)
        for program in _CLIENT_PROGRAMS:
            real = shutil.which(program)
            if real is None or Path(real).parent == self.bin_dir:
                continue
            wrapper = self.bin_dir / program
            wrapper.write_text(
                "#!/bin/sh\n"
                "# Written by tests/slurm_cluster.py: point a client command\n"
                "# at the private test cluster when SLURM_CONF got lost.\n"
                f'if [ -z "${{SLURM_CONF:-}}" ]; then SLURM_CONF={shlex.quote(str(self.conf_path))}; fi\n'
                "export SLURM_CONF\n"
                f'exec {shlex.quote(real)} "$@"\n'
            )
            wrapper.chmod(0o755)
        path = os.environ.get("PATH", os.defpath)
        self.env["PATH"] = f"{self.bin_dir}{os.pathsep}{path}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        stdio = open(self.log_dir / f"{name}.stdout", "ab")
        self._stdio_files.append(stdio)
        return subprocess.Popen(
            args,
            cwd=self.workdir,
            env=self.subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=stdio,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_set_parent_death_signal,
        )

    def _start_daemons(self) -> None:
        conf = str(self.conf_path)
        # -c: start from a clean state, -D: stay in the foreground so the
        # pid we hold is the daemon itself.
        self._slurmctld = self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", conf])
        self._wait_for_controller()
        self._slurmd = self._spawn(
            "slurmd", ["slurmd", "-D", "-f", conf, "-N", self.nodename]
        )

    def _wait_for_controller(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._slurmctld.poll() is not None:
                raise LocalSlurmError(
                    f"slurmctld exited with status {self._slurmctld.returncode}."
                    f"\n{self.logs_tail()}"
                )
            if self.run(["scontrol", "ping"], timeout=15).returncode == 0:
                return
            time.sleep(0.3)
        raise LocalSlurmError(
            f"slurmctld not answering after {timeout:.0f} s.\n{self.logs_tail()}"
        )

    def _cancel_all_jobs(self) -> None:
        """Cancel whatever is still queued so no job outlives the cluster."""
        try:
            listed = self.run(
                ["squeue", "--noheader", "--states=PD,R,CG,CF,S", "--format=%i"],
                timeout=15,
            )
            job_ids = listed.stdout.split() if listed.returncode == 0 else []
            if not job_ids:
                return
            self.run(["scancel", *job_ids], timeout=15)
            self.wait_for_jobs(timeout=20)
        except (OSError, subprocess.SubprocessError, LocalSlurmError):
            pass


# --------------------------------------------------------------------------
# pytest fixture: one cluster shared by the whole test session
# --------------------------------------------------------------------------

_shared: dict = {"cluster": None, "users": 0}


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory) -> Iterator[LocalSlurm]:
    """A started :class:`LocalSlurm`, shared by all tests of the session.

    Skips (or fails, with BOLTZFLOW_REQUIRE_SLURM=1) when SLURM is unusable.
    Reference counted, so importing this fixture into several modules or
    conftest files still starts only one cluster.
    """
    require_slurm_or_skip()
    if _shared["cluster"] is None:
        cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
        cluster.start()
        _shared["cluster"] = cluster
    _shared["users"] += 1
    try:
        yield _shared["cluster"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            cluster, _shared["cluster"] = _shared["cluster"], None
            cluster.stop()
