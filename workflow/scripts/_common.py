"""Shared start-up for the workflow's scripts (Snakemake puts this folder on sys.path).

Puts the workflow's own library (``workflow/boltzflow``) first on ``sys.path``, so a job always
runs the library version of the workflow it belongs to (as the Snakefile does), also inside a
conda env made by ``--sdm conda``, which has boltzflow's dependencies but not boltzflow itself.
Sends log records and warnings to the rule's log file as well as to stderr.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_LIBRARY = str(Path(__file__).resolve().parents[1])
# Move it to the front: Snakemake may already have appended it behind an installed copy.
sys.path[:] = [_LIBRARY] + [p for p in sys.path if p != _LIBRARY]


def setup_logging(smk) -> logging.Logger:
    """Log to the rule's log file (and stderr) and return the ``boltzflow`` logger."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if smk.log:
        Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(smk.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    logger = logging.getLogger("boltzflow")

    def log_uncaught(kind, error, trace):
        # The job's log must say why it failed, not only Snakemake's console.
        logger.critical("%s: %s", kind.__name__, error, exc_info=(kind, error, trace))

    sys.excepthook = log_uncaught
    logger.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards))
    return logger


def load_built(inputs):
    """The built system of a rule whose inputs name its ``pdb``, ``xml`` and ``spec`` files."""
    import json

    from boltzflow.systems import PeptideSpec, load_system

    with open(inputs.spec) as handle:
        spec = PeptideSpec(**json.load(handle))
    return load_system(inputs.pdb, inputs.xml, spec)


def heldout_frames(inputs, n):
    """``n`` evenly spaced MD test frames (float32, nm) of a rule whose inputs name the ``frames``
    and ``split`` files, or ``None`` when ``n`` is 0."""
    from boltzflow.evaluation import evenly_spaced
    from boltzflow.md import split_frames

    if not n:
        return None
    x = split_frames(inputs.frames, inputs.split, "test")
    return x[evenly_spaced(len(x), n)]


def run_keys(runs):
    """``(name, method, seed)`` of run names ``{name}/{method}-seed{seed}`` (EBM and SGDS rules)."""
    keys = []
    for run in runs:
        name, rest = run.split("/", 1)
        method, seed = rest.rsplit("-seed", 1)
        keys.append((name, method, int(seed)))
    return keys
