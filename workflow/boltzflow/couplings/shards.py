"""Reflow pairs made in shards: how many pairs each job makes, the seed of its prior draws, and
the merge of the shards into one pair file, checked to come from one teacher.

A job integrates at most ``shard_pairs`` pairs, so millions of pairs (the RegFlow paper used
10.4 M) split over cluster jobs, and an interrupted run redoes only the unfinished shards.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import numpy as np

from boltzflow.couplings.teacher import check_pairs_teacher
from boltzflow.io import ArtifactError, merge_pairs, read_metadata

__all__ = ["merge_reflow_shards", "shard_seed", "shard_sizes"]


def shard_sizes(n_pairs: int, shard_pairs: int) -> list[int]:
    """How ``n_pairs`` reflow pairs split into jobs of at most ``shard_pairs`` each (the last one
    takes the rest): ``shard_sizes(10, 4) == [4, 4, 2]``."""
    if n_pairs < 1 or shard_pairs < 1:
        raise ValueError(f"n_pairs and shard_pairs must be >= 1, got {n_pairs} and {shard_pairs}")
    full, rest = divmod(n_pairs, shard_pairs)
    return [shard_pairs] * full + ([rest] if rest else [])


def shard_seed(seed: int, shard: int) -> int:
    """The seed of shard ``shard``'s prior draws: independent streams per shard from one seed
    (numpy's ``SeedSequence``), so the pairs depend on ``seed`` and the shard size only."""
    if seed < 0 or shard < 0:
        raise ValueError(f"seed and shard must be >= 0, got {seed} and {shard}")
    return int(np.random.SeedSequence([seed, shard]).generate_state(1, dtype=np.uint32)[0])


def merge_reflow_shards(shards: list[str | os.PathLike], teacher_path: str | os.PathLike,
                        path: str | os.PathLike, metadata: Mapping[str, Any],
                        log: logging.Logger | None = None) -> dict[str, Any]:
    """Merge the reflow shards (in the given order) into the pair file ``path``, streamed.

    Every shard must come from the teacher at ``teacher_path`` (its recorded digest) and the shards
    must be distinct (no shard index twice); a shard that fails names itself. The merged metadata is
    ``metadata`` plus the teacher record and the integration cost: ``stats.seconds`` summed over the
    shards and ``stats.pairs_per_s`` per second of one job. Returns those stats.
    """
    log = log or logging.getLogger("boltzflow.couplings")
    metas = [read_metadata(shard) for shard in shards]
    teacher = None
    seen: dict[Any, str] = {}
    for shard, meta in zip(shards, metas):
        teacher = check_pairs_teacher(meta, teacher_path, shard)
        index = meta.get("shard")
        if index in seen:
            raise ArtifactError(f"{shard}: shard {index} again (also {seen[index]}); its pairs would repeat")
        seen[index] = str(shard)
    seconds = float(sum((meta.get("stats") or {}).get("seconds", 0.0) for meta in metas))
    n_pairs = int(sum(meta.get("n_pairs", 0) for meta in metas))
    stats = {"seconds": seconds, "shards": len(shards), "pairs_per_s": n_pairs / seconds if seconds > 0 else None}
    merge_pairs(list(shards), path, {**metadata, "teacher": teacher, "stats": stats})
    log.info("merged %d reflow pairs from %d shard(s) into %s; %.0f s of integration, %.0f pairs/s per job",
             n_pairs, len(shards), path, seconds, stats["pairs_per_s"] or float("nan"))
    return stats
