"""Invertible coupling flows for Boltzmann generators: affine and rational-quadratic spline couplings
(:mod:`~boltzflow.flows.coupling`, :mod:`~boltzflow.flows.spline`) composed into a :class:`Flow`
(:mod:`~boltzflow.flows.model`), coordinate frames that remove rigid motions
(:mod:`~boltzflow.flows.body`, :mod:`~boltzflow.flows.cartesian`, fitted and fingerprinted in
:mod:`~boltzflow.flows.frames`), and a :class:`BoltzmannGenerator` (flow + target energy) drawing importance-weighted sample sets
(:mod:`~boltzflow.flows.generator`, :mod:`~boltzflow.flows.sampling`)."""

from boltzflow.flows.body import (
    BodyFrame,
    choose_reference_atoms,
    fit_body_frame,
    random_rotations,
)
from boltzflow.flows.cartesian import CartesianFrame, helmert_basis
from boltzflow.flows.coupling import (
    AffineCoupling,
    CouplingLayer,
    ResidualMLP,
    SplineCoupling,
    coupling_masks,
)
from boltzflow.flows.frames import (
    FRAME_KINDS,
    check_same_frame,
    frame_fingerprint,
    latent_frame,
    read_frame,
    to_latent,
    write_frame,
)
from boltzflow.flows.generator import BoltzmannGenerator
from boltzflow.flows.model import (
    Flow,
    VectorFrame,
    build_flow,
    frame_from_config,
    load_flow,
    save_flow,
    standard_normal_log_prob,
)
from boltzflow.flows.sampling import SampleDraw, Sampler, draw_sample_set
from boltzflow.flows.spline import (
    rq_spline,
    rq_spline_from_params,
    rq_spline_planes,
    rq_spline_split,
    spline_knots,
)

__all__ = [
    "AffineCoupling", "BodyFrame", "CartesianFrame", "choose_reference_atoms", "fit_body_frame", "frame_from_config",
    "random_rotations", "CouplingLayer", "Flow", "ResidualMLP", "SplineCoupling", "VectorFrame",
    "build_flow", "coupling_masks", "helmert_basis", "load_flow", "rq_spline", "rq_spline_from_params",
    "rq_spline_planes", "rq_spline_split", "save_flow", "spline_knots",
    "standard_normal_log_prob",
    "FRAME_KINDS", "latent_frame", "frame_fingerprint", "write_frame", "read_frame", "check_same_frame", "to_latent",
    "Sampler", "SampleDraw", "draw_sample_set", "BoltzmannGenerator",
]
