"""Regression pairs ``(x0, x1)`` for RegFlow (arXiv 2506.01158): exact optimal-transport
couplings between two point sets (:mod:`~boltzflow.couplings.ot`) and reflow pairs pushed through a
trained CNF (:mod:`~boltzflow.couplings.reflow`), made in shards (:mod:`~boltzflow.couplings.shards`)
only from a teacher that passes its quality floor (:mod:`~boltzflow.couplings.quality`) and recorded
with the teacher that made them (:mod:`~boltzflow.couplings.teacher`)."""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "ot": ["as_points", "ot_pairs", "ot_permutation"],
    "quality": ["QUALITY_FLOOR_KEYS", "TeacherQualityError", "check_teacher_quality", "read_teacher_metrics"],
    "reflow": ["cnf_pairs"],
    "shards": ["merge_reflow_shards", "shard_seed", "shard_sizes"],
    "teacher": ["PairsTeacherError", "check_pairs_teacher", "teacher_record"],
})
