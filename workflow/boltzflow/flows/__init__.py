"""Invertible coupling flows for Boltzmann generators (see :mod:`boltzflow.flows.model`)."""

from .body import BodyFrame, choose_reference_atoms, fit_body_frame, random_rotations
from .cartesian import CartesianFrame, helmert_basis
from .coupling import AffineCoupling, CouplingLayer, ResidualMLP, SplineCoupling, coupling_masks
from .model import Flow, VectorFrame, build_flow, frame_from_config, load_flow, save_flow, standard_normal_log_prob
from .spline import rq_spline, rq_spline_from_params, rq_spline_planes, rq_spline_split, spline_knots

__all__ = [
    "AffineCoupling", "BodyFrame", "CartesianFrame", "choose_reference_atoms", "fit_body_frame", "frame_from_config",
    "random_rotations", "CouplingLayer", "Flow", "ResidualMLP", "SplineCoupling", "VectorFrame",
    "build_flow", "coupling_masks", "helmert_basis", "load_flow", "rq_spline", "rq_spline_from_params",
    "rq_spline_planes", "rq_spline_split", "save_flow", "spline_knots",
    "standard_normal_log_prob",
]
