"""Which teacher made a file of reflow pairs.

A RegFlow student learns its teacher's map, so its pairs must come from the teacher the workflow
holds now. :func:`teacher_record` describes a teacher for the pair file's metadata (the digest of
its checkpoint, how long it trained, its scores when it was scored), and
:func:`check_pairs_teacher` refuses pairs whose recorded teacher is not the given checkpoint,
naming both files. Frame and system are checked elsewhere (``flows.check_same_frame``); this
catches pairs of the same frame from another teacher (an older run, another seed or config).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from boltzflow.io import ArtifactError, file_digest

__all__ = ["PairsTeacherError", "check_pairs_teacher", "teacher_record"]

#: teacher metrics copied into a pair file's metadata when the teacher was scored
RECORDED_METRICS = ("ess", "e_w1", "t_w2", "n_drawn")


class PairsTeacherError(ArtifactError):
    """A pair file was made by another teacher than the one given (the message names both files)."""


def teacher_record(model_path: str | os.PathLike, extra: Mapping[str, Any],
                   metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The teacher's identity for a pair file: checkpoint path and digest, training steps and wall
    time (from the summary that ``train_cnf`` saves in ``extra``), and its scores if given."""
    summary = extra.get("summary") or {}
    record: dict[str, Any] = {
        "model": str(model_path),
        "digest": file_digest(model_path),
        "train_steps": summary.get("steps"),
        "train_wall_s": summary.get("wall_s"),
    }
    if metrics is not None:
        record["metrics"] = {key: float(metrics[key]) for key in RECORDED_METRICS if key in metrics}
    return record


def check_pairs_teacher(pair_meta: Mapping[str, Any], teacher_path: str | os.PathLike,
                        pairs_path: str | os.PathLike) -> dict[str, Any]:
    """Raise :class:`PairsTeacherError` unless the pairs at ``pairs_path`` (metadata ``pair_meta``)
    were made by the checkpoint at ``teacher_path``; returns the recorded teacher."""
    recorded = pair_meta.get("teacher")
    if not isinstance(recorded, Mapping) or "digest" not in recorded:
        raise PairsTeacherError(
            f"{pairs_path}: the pairs do not record which teacher made them (written before teachers were "
            f"recorded, or not by cnf_pairs); remake them from {teacher_path}")
    digest = file_digest(teacher_path)
    if recorded["digest"] != digest:
        raise PairsTeacherError(
            f"{pairs_path}: made by teacher {recorded.get('model', '?')} (digest {recorded['digest']}), but "
            f"the teacher is now {teacher_path} (digest {digest}); remake the pairs from it")
    return dict(recorded)
