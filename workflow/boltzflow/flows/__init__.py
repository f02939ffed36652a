"""Invertible coupling flows for Boltzmann generators: affine and rational-quadratic spline couplings
(:mod:`~boltzflow.flows.coupling`, :mod:`~boltzflow.flows.spline`) composed into a :class:`Flow`
(:mod:`~boltzflow.flows.model`), coordinate frames that remove rigid motions
(:mod:`~boltzflow.flows.body`, :mod:`~boltzflow.flows.internal`, :mod:`~boltzflow.flows.cartesian`, fitted and fingerprinted in
:mod:`~boltzflow.flows.frames`), and a :class:`BoltzmannGenerator` (flow + target energy) drawing importance-weighted sample sets
(:mod:`~boltzflow.flows.generator`, :mod:`~boltzflow.flows.sampling`)."""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "body": ["BodyFrame", "RigidFreeFrame", "choose_reference_atoms", "fit_body_frame", "random_rotations"],
    "cartesian": ["CartesianFrame", "helmert_basis"],
    "coupling": ["AffineCoupling", "CouplingLayer", "ResidualMLP", "SplineCoupling", "coupling_masks"],
    "frames": [
        "FRAME_KINDS", "check_same_frame", "frame_fingerprint", "latent_frame", "read_frame", "to_latent",
        "write_frame",
    ],
    "generator": ["BoltzmannGenerator"],
    "internal": [
        "InternalFrame", "TORSION_MAPS", "build_zmatrix", "fit_internal_frame", "fit_torsion_cdf", "topology_bonds",
    ],
    "model": [
        "Flow", "VectorFrame", "build_flow", "frame_from_config", "load_flow", "save_flow",
        "standard_normal_log_prob",
    ],
    "sampling": ["SampleDraw", "Sampler", "draw_sample_set"],
    "spline": ["rq_spline", "rq_spline_from_params", "rq_spline_planes", "rq_spline_split", "spline_knots"],
})
