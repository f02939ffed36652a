"""Training flows for Boltzmann generators: the RegFlow and MLE objectives
(:mod:`~boltzflow.training.objectives`, RegFlow of arXiv 2506.01158), the shared loop with EMA,
checkpoints and resume (:mod:`~boltzflow.training.loop`), and the workflow's steps that fit a
coupling flow or a CNF teacher and make their pairs (:mod:`~boltzflow.training.fit`)."""

from boltzflow.training.fit import (  # noqa: F401
    fit_cnf,
    fit_flow,
    flow_architecture,
    make_cnf_pairs,
    make_ot_pairs,
)
from boltzflow.training.loop import (  # noqa: F401
    CHECKPOINT_NAME,
    EMA,
    TrainSettings,
    guarded_step,
    invertibility_report,
    train,
)
from boltzflow.training.objectives import (  # noqa: F401
    METHODS,
    REGULARISERS,
    Objective,
    mle_loss,
    regflow_loss,
)

__all__ = [
    "make_ot_pairs",
    "flow_architecture",
    "fit_flow",
    "fit_cnf",
    "make_cnf_pairs",
    "METHODS",
    "REGULARISERS",
    "CHECKPOINT_NAME",
    "Objective",
    "TrainSettings",
    "regflow_loss",
    "mle_loss",
    "EMA",
    "train",
    "invertibility_report",
    "guarded_step",
]
