"""The shared part of the one-run command lines (``python -m boltzflow.ebm.run``,
``python -m boltzflow.sgds.run``): their common options, logging, and the layered, schema-checked
config section."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Sequence

from boltzflow.config import layered_section

__all__ = ["stage_parser", "parse_stage"]


def stage_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with ``--configfile``, ``--seed``, ``--threads`` and ``--out``; add the rest."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--configfile", nargs="*", default=[], help="config files layered on config/config.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", required=True, help="output folder")
    return parser


def parse_stage(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                section: str) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parsed arguments and the validated config ``section`` (exit status 2 with the message on a
    bad config); logging goes to stderr and torch uses ``--threads`` threads."""
    import torch


    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        stream=sys.stderr)
    try:
        cfg = layered_section(args.configfile, section)
    except (OSError, ValueError) as err:  # ConfigError is a ValueError
        parser.exit(2, f"error: {err}\n")
    torch.set_num_threads(args.threads)
    return args, cfg
