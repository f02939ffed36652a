"""Coupling flows: log-determinants against autograd Jacobians, inverse round trips, the spline
against zuko's, the Cartesian frame, and checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import zuko.transforms
from boltzflow.flows import (
    AffineCoupling,
    CartesianFrame,
    SplineCoupling,
    build_flow,
    coupling_masks,
    helmert_basis,
    load_flow,
    rq_spline,
    rq_spline_from_params,
    rq_spline_planes,
    save_flow,
    spline_knots,
)
from boltzflow.io import ArtifactError


def _randomise(module: torch.nn.Module, std: float, seed: int = 0) -> None:
    """Give every parameter a random value so layers are far from the identity they start as."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


def _layer(kind: str, dim: int = 7, dtype=torch.float64):
    transformed = np.array([0, 2, 3, 6])
    layer = AffineCoupling(dim, transformed, hidden=16, depth=3) if kind == "affine" else \
        SplineCoupling(dim, transformed, hidden=16, depth=3, bins=6, bound=3.0)
    _randomise(layer, 0.15)
    return layer.to(dtype)


@pytest.mark.parametrize("kind", ["affine", "spline"])
def test_layer_log_det_matches_autograd_jacobian(kind):
    layer = _layer(kind)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(6, 7, generator=gen, dtype=torch.float64) * 1.5
    _, logdet = layer(z)
    y, _ = layer(z)
    _, logdet_inv = layer.inverse(y)
    for i in range(len(z)):
        jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], z[i])
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jac)[1], atol=1e-8, rtol=0)
        jac_inv = torch.autograd.functional.jacobian(lambda v: layer.inverse(v[None])[0][0], y[i])
        assert torch.allclose(logdet_inv[i], torch.linalg.slogdet(jac_inv)[1], atol=1e-8, rtol=0)


@pytest.mark.parametrize("kind", ["affine", "spline"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_layer_inverse_round_trip(kind, dtype, tol):
    layer = _layer(kind, dtype=dtype)
    z = torch.randn(2000, 7, generator=torch.Generator().manual_seed(2), dtype=dtype) * 2.0
    y, logdet = layer(z)
    z_back, logdet_inv = layer.inverse(y)
    assert (z_back - z).abs().max().item() < tol
    assert (logdet + logdet_inv).abs().max().item() < tol
    assert not torch.allclose(y, z, atol=0.1), "the randomised layer should not be the identity"


def test_spline_matches_zuko_on_the_same_knots():
    """Our rational-quadratic spline equals zuko's MonotonicRQSTransform given the same knots."""
    gen = torch.Generator().manual_seed(3)
    bins, bound = 7, 2.5
    params = torch.randn(500, 3 * bins - 1, generator=gen, dtype=torch.float64) * 2.0
    knots = spline_knots(params, bins, bound)
    zuko_spline = zuko.transforms.MonotonicRQSTransform(
        torch.zeros(500, bins, dtype=torch.float64), torch.zeros(500, bins, dtype=torch.float64),
        torch.zeros(500, bins - 1, dtype=torch.float64), bound=bound)
    zuko_spline.horizontal, zuko_spline.vertical, zuko_spline.derivatives = knots.xk, knots.yk, knots.dk
    x = torch.randn(500, generator=gen, dtype=torch.float64) * 1.5  # some fall outside the bound
    assert (x.abs() > bound).any() and (x.abs() < bound).any()
    y, log_d = rq_spline(x, knots)
    y_zuko, log_d_zuko = zuko_spline.call_and_ladj(x)
    assert torch.allclose(y, y_zuko, atol=1e-12, rtol=0)
    assert torch.allclose(log_d, log_d_zuko, atol=1e-10, rtol=0)
    x_back, _ = rq_spline(y, knots, inverse=True)
    assert torch.allclose(x_back, zuko_spline.inv(y), atol=1e-10, rtol=0)
    assert torch.allclose(x_back, x, atol=1e-10, rtol=0)


def test_spline_knots_are_monotone_and_start_as_identity():
    knots = spline_knots(torch.zeros(3, 3 * 5 - 1), 5, 4.0)
    x = torch.linspace(-6, 6, 101).repeat(3, 1)
    wide = [t[:, None].expand(3, 101, 6) for t in (knots.xk, knots.yk, knots.dk)]
    y, log_d = rq_spline(x, type(knots)(*wide, 4.0))
    assert torch.allclose(y, x, atol=1e-5) and log_d.abs().max() < 1e-5
    params = torch.randn(50, 14, generator=torch.Generator().manual_seed(4)) * 5
    knots = spline_knots(params, 5, 4.0)
    assert (knots.xk.diff(dim=-1) > 0).all() and (knots.yk.diff(dim=-1) > 0).all() and (knots.dk > 0).all()
    assert torch.equal(knots.xk[:, 0], torch.full((50,), -4.0)) and torch.equal(knots.yk[:, -1], torch.full((50,), 4.0))


@pytest.mark.parametrize("bins", [2, 3, 8])
@pytest.mark.parametrize("inverse", [False, True])
def test_parameter_paths_match_the_explicit_knots(bins, inverse):
    """rq_spline_from_params and the bins-before-elements layout the layers use compute the spline
    of spline_knots + rq_spline (same knots up to rounding)."""
    gen = torch.Generator().manual_seed(7)
    params = torch.randn(300, 5, 3 * bins - 1, generator=gen, dtype=torch.float64) * 2.0
    x = torch.randn(300, 5, generator=gen, dtype=torch.float64) * 2.5  # some outside the bound
    y, log_d = rq_spline(x, spline_knots(params, bins, 3.0), inverse=inverse)
    y_p, log_d_p = rq_spline_from_params(x, params, bins, 3.0, inverse=inverse)
    planes = params[..., :2 * bins].unflatten(-1, (2, bins)).permute(0, 2, 3, 1), params[..., 2 * bins:].transpose(1, 2)
    y_l, log_d_l = rq_spline_planes(x, *planes, 3.0, inverse=inverse)
    for a, b in ((y_p, y), (log_d_p, log_d), (y_l, y), (log_d_l, log_d)):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_spline_planes_gradients():
    """The in-place cumulative sum and the gathers of the fast path are differentiable."""
    gen = torch.Generator().manual_seed(8)
    widths_heights = torch.randn(3, 2, 4, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    derivatives = torch.randn(3, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    x = (torch.rand(3, 2, generator=gen, dtype=torch.float64) * 3.6 - 1.8).requires_grad_(True)
    for inverse in (False, True):
        assert torch.autograd.gradcheck(lambda a, b, c: rq_spline_planes(c, a, b, 2.0, inverse=inverse),
                                        (widths_heights, derivatives, x))


@pytest.mark.parametrize("kind", ["affine", "spline"])
def test_layer_fast_path_matches_transform(kind):
    """forward/inverse (regrouped conditioner outputs, padded products) equal transform() on the
    conditioner's plain output."""
    layer = _layer(kind, dim=9)
    y_in = torch.randn(50, 9, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 1.5
    for inverse in (False, True):
        za, zt = y_in[:, layer.conditioning], y_in[:, layer.transformed]
        params = layer.conditioner(za).reshape(50, layer.n_transformed, layer.params_per_feature)
        yt, logd = layer.transform(zt, params, inverse=inverse)
        out, logdet = layer.inverse(y_in) if inverse else layer(y_in)
        assert torch.allclose(out[:, layer.transformed], yt, atol=1e-13, rtol=0)
        assert torch.equal(out[:, layer.conditioning], za)
        assert torch.allclose(logdet, logd.sum(1), atol=1e-12, rtol=0)


def test_flow_chunks_rows_without_autograd_and_gives_the_same_result():
    flow = build_flow({"transform": "spline", "layers": 4, "hidden": 16,
                       "frame": {"kind": "vector", "dim": 5, "scale": 1.0}})
    _randomise(flow, 0.05, seed=10)
    z = torch.randn(70, 5, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        whole = flow(z), flow.inverse(z)
        flow.chunk_rows = 16  # five chunks, the last one short
        chunked = flow(z), flow.inverse(z)
    for a, b in zip(whole, chunked):
        # the same operations per row; BLAS may round a row differently for a shorter matrix
        assert torch.allclose(a[0], b[0], atol=1e-6, rtol=0) and torch.allclose(a[1], b[1], atol=1e-5, rtol=0)
    y, logdet = flow(z)  # with autograd: one pass, gradients flow
    assert y.requires_grad and logdet.shape == (70,)


def test_spline_parameter_shape_error_names_the_expected_size():
    with pytest.raises(ValueError, match="last dimension 14 for 5 bins"):
        spline_knots(torch.zeros(2, 13), 5, 3.0)


def test_coupling_masks_cover_every_feature():
    for kind, dim in (("halves", 63), ("axes", 63)):
        masks = coupling_masks(dim, 6, kind, seed=1)
        assert len(masks) == 6
        assert set(np.concatenate(masks).tolist()) == set(range(dim))
    halves = coupling_masks(10, 2, "halves", seed=0)
    assert sorted(np.concatenate(halves).tolist()) == list(range(10))  # a pair partitions the features
    with pytest.raises(ValueError, match="unknown mask kind"):
        coupling_masks(10, 2, "checker")
    with pytest.raises(ValueError, match="divisible by 3"):
        coupling_masks(10, 2, "axes")


def test_helmert_basis_is_orthonormal_and_centroid_free():
    for n in (2, 5, 22):
        q = helmert_basis(n)
        assert q.shape == (n, n - 1)
        assert np.allclose(q.T @ q, np.eye(n - 1), atol=1e-14)
        assert np.allclose(q.T @ np.ones(n), 0.0, atol=1e-14)


def test_cartesian_frame_round_trip_and_translation_invariance():
    frame = CartesianFrame(5, scale=0.3).double()
    x = torch.randn(4, 15, dtype=torch.float64)
    shifted = x + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64).repeat(5)
    assert torch.allclose(frame.to_latent(x), frame.to_latent(shifted), atol=1e-13)
    back = frame.from_latent(frame.to_latent(x))
    centred = (x.reshape(4, 5, 3) - x.reshape(4, 5, 3).mean(1, keepdim=True)).reshape(4, 15)
    assert torch.allclose(back, centred, atol=1e-13)
    assert math.isclose(float(frame.log_det_to_latent()), -12 * math.log(0.3), rel_tol=1e-14)
    with pytest.raises(ValueError, match=r"shape \(B, 15\)"):
        frame.to_latent(torch.zeros(2, 14))


def test_identity_flow_density_is_the_analytic_gaussian():
    """A freshly built flow is the identity, so log q(x) is the Gaussian of the scaled centroid-free
    coordinates: log N(Q^T x / s) - d log s."""
    n_atoms, scale = 6, 0.25
    flow = build_flow({"transform": "spline", "layers": 3, "hidden": 8,
                       "frame": {"kind": "cartesian", "n_atoms": n_atoms, "scale": scale}, "dtype": "float64"})
    x = torch.randn(9, 3 * n_atoms, dtype=torch.float64) * 0.2
    q = torch.tensor(helmert_basis(n_atoms), dtype=torch.float64)
    c = torch.einsum("bnk,nm->bmk", x.reshape(9, n_atoms, 3), q).reshape(9, -1) / scale
    d = c.shape[1]
    expected = -0.5 * (c.square().sum(1) + d * math.log(2 * math.pi)) - d * math.log(scale)
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-12)


@pytest.mark.parametrize("transform", ["affine", "spline"])
def test_flow_sample_log_prob_consistency_and_centroid(transform):
    flow = build_flow({"transform": transform, "layers": 6, "hidden": 32, "depth": 2,
                       "frame": {"kind": "cartesian", "n_atoms": 8, "scale": 0.2}, "dtype": "float64"})
    _randomise(flow, 0.05, seed=5)
    x, log_q = flow.sample(300, generator=torch.Generator().manual_seed(6))
    assert x.shape == (300, 24) and log_q.dtype == torch.float64
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-10)
    assert x.reshape(300, 8, 3).mean(1).abs().max() < 1e-14


def test_flow_rejects_unknown_settings_and_wrong_shapes():
    with pytest.raises(ValueError, match="unknown flow setting.*widht"):
        build_flow({"transform": "affine", "widht": 3, "frame": {"kind": "vector", "dim": 2, "scale": 1.0}})
    with pytest.raises(ValueError, match="'transform' must be one of affine, spline"):
        build_flow({"transform": "maf", "frame": {"kind": "vector", "dim": 2, "scale": 1.0}})
    flow = build_flow({"transform": "affine", "layers": 2, "frame": {"kind": "vector", "dim": 4, "scale": 1.0}})
    with pytest.raises(ValueError, match=r"shape \(B, 4\)"):
        flow.log_prob(torch.zeros(3, 5))


def test_flow_checkpoint_round_trip_and_bad_files(tmp_path):
    flow = build_flow({"transform": "spline", "layers": 4, "hidden": 16,
                       "frame": {"kind": "cartesian", "n_atoms": 4, "scale": 0.3}})
    _randomise(flow, 0.05)
    path = tmp_path / "model.pt"
    save_flow(flow, path, extra={"step": 7})
    loaded, extra = load_flow(path)
    assert extra == {"step": 7}
    x, _ = flow.sample(20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.log_prob(x), flow.log_prob(x))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="junk.pt"):
        load_flow(tmp_path / "junk.pt")
    other = build_flow({"transform": "spline", "layers": 2, "hidden": 16,
                        "frame": {"kind": "cartesian", "n_atoms": 4, "scale": 0.3}})
    torch.save({"config": other.config(), "state_dict": flow.state_dict()}, tmp_path / "mismatch.pt")
    with pytest.raises(ArtifactError, match="mismatch.pt.*do not fit"):
        load_flow(tmp_path / "mismatch.pt")
