"""Training flows for Boltzmann generators: the RegFlow and MLE objectives
(:mod:`~boltzflow.training.objectives`, RegFlow of arXiv 2506.01158), the shared loop with EMA,
checkpoints and resume (:mod:`~boltzflow.training.loop`), and the workflow's steps that fit a
coupling flow or a CNF teacher and make their pairs (:mod:`~boltzflow.training.fit`)."""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "fit": ["fit_cnf", "fit_flow", "flow_architecture", "make_ot_pairs"],
    "loop": ["CHECKPOINT_NAME", "EMA", "TrainSettings", "guarded_step", "invertibility_report", "train"],
    "objectives": ["METHODS", "REGULARISERS", "Objective", "mle_loss", "regflow_loss"],
})
