"""The body frame: exact rigid-motion removal with a proper density on the centroid-free hyperplane."""

import math

import numpy as np
import pytest
import torch
from boltzflow.flows import (
    BodyFrame,
    build_flow,
    choose_reference_atoms,
    fit_body_frame,
    helmert_basis,
    load_flow,
    random_rotations,
    save_flow,
)


def _gaussian_molecules(n_atoms: int, n: int, seed: int):
    """Points of the isotropic standard normal on the centroid-free hyperplane (Helmert
    coordinates c ~ N(0, I)), which is rotation invariant and exactly normalised, as positions."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(n, n_atoms - 1, 3, generator=gen, dtype=torch.float64)
    basis = torch.tensor(helmert_basis(n_atoms))
    x = torch.einsum("nm,bmk->bnk", basis, c).reshape(n, 3 * n_atoms)
    return x, _gaussian_log_density(x, n_atoms)


def _gaussian_log_density(x: torch.Tensor, n_atoms: int) -> torch.Tensor:
    basis = torch.tensor(helmert_basis(n_atoms))
    c = torch.einsum("nm,bnk->bmk", basis, x.reshape(len(x), n_atoms, 3))
    return -0.5 * c.square().sum(dim=(1, 2)) - 1.5 * (n_atoms - 1) * math.log(2 * math.pi)


def _identity_flow(frame_cfg):
    # a new flow is the identity (zero-initialised output layers), so q_y is exactly N(0, I)
    return build_flow({"transform": "spline", "layers": 2, "hidden": 8, "frame": frame_cfg, "dtype": "float64"})


@pytest.mark.parametrize("n_atoms", [3, 5])
def test_density_is_normalised_on_the_centroid_free_hyperplane(n_atoms):
    """Importance sampling between the body-frame flow q and a normalised rotation-invariant
    density p gives E_q[p/q] = 1 and E_p[q/p] = 1 only if every Jacobian factor (whitening, the
    d^3 f^2 of the reference atoms, the Haar volume 8 pi^2, the translation gauge N^(3/2)) is right.
    A missing factor would be off by at least 2x; the tolerance is 5 standard errors."""
    x, _ = _gaussian_molecules(n_atoms, 20_000, seed=0)
    flow = _identity_flow(fit_body_frame(x.numpy(), n_atoms, [0, 1, 2]))
    n = 400_000
    with torch.no_grad():
        xs, log_q = flow.sample(n, generator=torch.Generator().manual_seed(1))
        w = (_gaussian_log_density(xs, n_atoms) - log_q).exp()
        xp, log_p = _gaussian_molecules(n_atoms, n, seed=2)
        v = (flow.log_prob(xp) - log_p).exp()
    for ratio in (w, v):
        se = float(ratio.std()) / math.sqrt(n)
        assert abs(float(ratio.mean()) - 1.0) < 5 * se + 1e-3, (float(ratio.mean()), se)


def test_round_trips_and_rigid_motions():
    x, _ = _gaussian_molecules(6, 500, seed=3)
    frame = BodyFrame(**{k: v for k, v in fit_body_frame(x.numpy(), 6, [2, 0, 4]).items() if k != "kind"})
    y = frame.to_latent(x)
    assert y.shape == (500, 12)
    # a rotation and a translation of the input change nothing
    moved = (torch.einsum("bij,bnj->bni", random_rotations(500, torch.Generator().manual_seed(4)),
                          x.reshape(500, 6, 3)) + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    assert torch.allclose(frame.to_latent(moved.reshape(500, 18)), y, atol=1e-10)
    back = frame.from_latent(y, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(frame.to_latent(back), y, atol=1e-10)
    assert back.reshape(500, 6, 3).mean(dim=1).abs().max() < 1e-12  # centroid 0
    dist = lambda p: torch.cdist(p.reshape(-1, 6, 3), p.reshape(-1, 6, 3))  # noqa: E731
    assert torch.allclose(dist(back), dist(x), atol=1e-10)

    def handedness(p):
        p = p.reshape(-1, 6, 3)
        return torch.linalg.det(torch.stack([p[:, 1] - p[:, 0], p[:, 3] - p[:, 0], p[:, 5] - p[:, 0]], dim=1)).sign()

    assert torch.equal(handedness(back), handedness(x))  # proper rotations only: chirality is kept
    # the orientations are drawn: two generators give different positions with the same latent
    other = frame.from_latent(y, generator=torch.Generator().manual_seed(6))
    assert (other - back).abs().max() > 0.1


def test_flow_log_prob_equals_the_sampled_log_density():
    x, _ = _gaussian_molecules(5, 5000, seed=7)
    flow = build_flow({"transform": "affine", "layers": 4, "hidden": 16,
                       "frame": fit_body_frame(x.numpy(), 5, [0, 1, 2]), "dtype": "float64"})
    with torch.no_grad():
        for p in flow.parameters():  # move away from the identity
            p.add_(0.05 * torch.randn_like(p))
        xs, log_q = flow.sample(256, generator=torch.Generator().manual_seed(8))
        assert torch.allclose(flow.log_prob(xs), log_q, atol=1e-9)


def test_random_rotations_are_haar():
    rot = random_rotations(200_000, torch.Generator().manual_seed(9))
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(rot @ rot.transpose(1, 2), eye.expand_as(rot), atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(len(rot), dtype=torch.float64), atol=1e-12)
    # Haar: every entry has mean 0 and variance 1/3; the trace 1 + 2 cos(theta) has mean 0 and
    # variance 1 (theta has density (1 - cos theta) / pi)
    assert rot.mean(dim=0).abs().max() < 0.01
    assert (rot.square().mean(dim=0) - 1 / 3).abs().max() < 0.01
    trace = rot.diagonal(dim1=1, dim2=2).sum(dim=1)
    assert abs(float(trace.mean())) < 0.01 and abs(float(trace.var()) - 1.0) < 0.02


def test_reference_atoms_from_topology():
    from boltzflow.systems import build_peptide, get_spec

    assert choose_reference_atoms(build_peptide(get_spec("al2")).topology) == [8, 6, 14]  # CA, N, C of ALA
    al4 = build_peptide(get_spec("al4")).topology
    picked = choose_reference_atoms(al4)
    names = {a.index: (a.residue.index, a.name) for a in al4.atoms()}
    assert [names[i][1] for i in picked] == ["CA", "N", "C"] and names[picked[0]][0] == 2  # the middle ALA


def test_bad_frames_are_refused():
    x, _ = _gaussian_molecules(4, 200, seed=10)
    with pytest.raises(ValueError, match="more than 6 training frames"):
        fit_body_frame(x[:5].numpy(), 4, [0, 1, 2])
    collinear = x.clone().reshape(200, 4, 3)
    collinear[:, 2] = 2 * collinear[:, 1] - collinear[:, 0]  # atom 2 on the line through atoms 0 and 1
    with pytest.raises(ValueError, match="degenerate"):
        fit_body_frame(collinear.reshape(200, 12).numpy(), 4, [0, 1, 2])
    with pytest.raises(ValueError, match="3 distinct atom indices"):
        build_flow({"transform": "affine", "frame": {**fit_body_frame(x.numpy(), 4, [0, 1, 2]),
                                                     "reference_atoms": [0, 0, 2]}})


def test_body_flow_checkpoint_round_trip(tmp_path):
    x, _ = _gaussian_molecules(5, 1000, seed=11)
    flow = build_flow({"transform": "spline", "layers": 2, "hidden": 8,
                       "frame": fit_body_frame(x.numpy(), 5, [1, 0, 2])})
    save_flow(flow, tmp_path / "model.pt")
    again, _ = load_flow(tmp_path / "model.pt")
    with torch.no_grad():
        assert torch.equal(again.log_prob(x[:50].float()), flow.log_prob(x[:50].float()))
    assert np.allclose(again.frame.components.numpy(), flow.frame.components.numpy(), rtol=0, atol=0)
