"""The internal-coordinate frame: Z-matrix, exact round trips, Jacobian and a normalised density."""

import math

import mdtraj
import numpy as np
import pytest
import torch
from boltzflow.flows import (
    InternalFrame,
    build_flow,
    build_zmatrix,
    draw_sample_set,
    fit_internal_frame,
    fit_torsion_cdf,
    helmert_basis,
    latent_frame,
    load_flow,
    random_rotations,
    save_flow,
    topology_bonds,
)
from boltzflow.flows.internal import bond_angle, dihedral, place_atom

_TWO_PI_T = 2.0 * math.pi

# two small trees: a chain with a branch, and a centre with three substituents
TREES = {
    "chain": (5, [(0, 1), (0, 2), (1, 3), (2, 4)]),
    "branched": (7, [(0, 1), (0, 2), (0, 3), (1, 4), (4, 5), (4, 6)]),
}


def _gaussian_molecules(n_atoms: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws of the isotropic standard normal on the centroid-free hyperplane (rotation invariant,
    exactly normalised) as positions, with their log-density."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(n, n_atoms - 1, 3, generator=gen, dtype=torch.float64)
    basis = torch.tensor(helmert_basis(n_atoms))
    x = torch.einsum("nm,bmk->bnk", basis, c).reshape(n, 3 * n_atoms)
    return x, -0.5 * c.square().sum(dim=(1, 2)) - 1.5 * (n_atoms - 1) * math.log(2 * math.pi)


def _gaussian_log_density(x: torch.Tensor, n_atoms: int) -> torch.Tensor:
    basis = torch.tensor(helmert_basis(n_atoms))
    c = torch.einsum("nm,bnk->bmk", basis, x.reshape(len(x), n_atoms, 3))
    return -0.5 * c.square().sum(dim=(1, 2)) - 1.5 * (n_atoms - 1) * math.log(2 * math.pi)


def _al2_topology():
    from boltzflow.systems import build_peptide, get_spec

    return build_peptide(get_spec("al2")).topology


@pytest.mark.parametrize("torsion_map", ["marginal", "standardised"])
def test_density_is_normalised_on_the_centroid_free_hyperplane(torsion_map):
    """E_q[p/q] = 1 for a normalised rotation-invariant p only if every factor of the Jacobian is
    right (whitening, r^2 sin(theta) per atom, the reference pair, 8 pi^2, N^(3/2), and the marginal
    torsion map's F'(u) / phi(z)) and the proposals outside the chart's domain are counted as weight
    0, not dropped (dropping them would give 1 / P(valid), 2 to 3 here). The bonds' and angles'
    widths (and the standardised torsions') are 1.5x the fitted ones, so that q's tails are heavier
    than p's (p/q has finite variance); tolerance 5 standard errors. Measured with 600,000 draws:
    1.0020 +- 0.0031 (marginal) and 1.0044 +- 0.0039 (standardised), 50 % and 66 % of the draws
    out of the chart."""
    n_atoms, bonds = TREES["chain"]
    x, _ = _gaussian_molecules(n_atoms, 20_000, seed=0)
    cfg = fit_internal_frame(x.numpy(), n_atoms, [0, 1, 2], bonds, torsion_map=torsion_map)
    n_smooth = 2 * (n_atoms - 3) + 3
    widen = [1.5] * n_smooth + [1.0 if torsion_map == "marginal" else 1.5] * (n_atoms - 3)
    cfg["sigma"] = [f * s for f, s in zip(widen, cfg["sigma"])]
    flow = build_flow({"transform": "affine", "layers": 2, "hidden": 8, "frame": cfg, "dtype": "float64"})
    weights = []
    with torch.no_grad():
        for batch in range(2):
            xs, log_q = flow.sample(200_000, generator=torch.Generator().manual_seed(batch))
            valid = torch.isfinite(log_q)
            assert torch.equal(valid, torch.isfinite(xs).all(dim=1))     # out of domain: no point, no density
            w = torch.zeros(len(xs), dtype=torch.float64)
            w[valid] = (_gaussian_log_density(xs[valid], n_atoms) - log_q[valid]).exp()
            weights.append(w)
    w = torch.cat(weights)
    assert 0.3 < float((w == 0).double().mean()) < 0.9                  # the test does leave the chart
    se = float(w.std()) / math.sqrt(len(w))
    assert abs(float(w.mean()) - 1.0) < 5 * se + 1e-3, (float(w.mean()), se)


def test_marginal_torsion_map_is_exact_and_never_leaves_the_cut_interval():
    """The marginal torsion map (flows.frame.torsions: marginal): standard-normal marginals on the
    data it was fitted to, every latent value (also 8 standard deviations out) a torsion strictly inside the cut
    interval, float64 round trips, and its log-derivative equal to autograd's."""
    gen = torch.Generator().manual_seed(21)
    # three torsions: a three-well rotor, a narrow peak, and one on the whole circle
    wells = torch.tensor([0.6, 2.7, 4.8])[torch.randint(0, 3, (30_000,), generator=gen)]
    u = torch.stack([wells + 0.25 * torch.randn(30_000, generator=gen),
                     3.0 + 0.05 * torch.randn(30_000, generator=gen),
                     _TWO_PI_T * torch.rand(30_000, generator=gen, dtype=torch.float64)], dim=1)
    u = torch.remainder(u.double(), _TWO_PI_T)
    cdf = fit_torsion_cdf(u.numpy())
    frame = _frame_with_torsion_cdf(cdf, n_torsions=3)
    z = frame._gaussianise(u)
    # near N(0, 1): the 1 % uniform share pulls the data a little inwards (std 0.93 for the narrow peak)
    assert torch.allclose(z.mean(dim=0), torch.zeros(3, dtype=torch.float64), atol=0.05)
    assert torch.allclose(z.std(dim=0), torch.ones(3, dtype=torch.float64), atol=0.1)
    # 8 sigma wide: the whole latent line lands inside (0, 2 pi)
    wide = 8.0 * (2.0 * torch.rand(20_000, 3, generator=gen, dtype=torch.float64) - 1.0)
    back, log_dz_du = frame._degaussianise(wide)
    assert ((back > 0) & (back < _TWO_PI_T)).all()
    # beyond 5 sigma a torsion within 1e-9 rad of the cut holds the rest of the tail: float64 angles
    # resolve z there to 1e-8 (6 sigma) and 1e-5 (7 sigma) only
    inner = (wide.abs() < 5).all(dim=1)
    assert torch.allclose(frame._gaussianise(back[inner]), wide[inner], atol=1e-8)
    assert torch.allclose(frame._degaussianise(z)[0], u, atol=1e-9)
    probe = back[inner][:64].clone().requires_grad_(True)
    grads = torch.autograd.grad(frame._gaussianise(probe).sum(), probe)[0]      # the map is elementwise
    assert torch.allclose(grads.log().sum(dim=1), frame._degaussianise(wide[inner][:64])[1], atol=1e-7)


def _frame_with_torsion_cdf(cdf, n_torsions):
    """A smallest internal frame (a chain of n_torsions + 3 atoms) carrying the given torsion CDFs."""
    n_atoms = n_torsions + 3
    bonds = [(0, 1), (0, 2)] + [(i - 2 if i > 3 else 1, i) for i in range(3, n_atoms)]
    x, _ = _gaussian_molecules(n_atoms, 500, seed=22)
    cfg = fit_internal_frame(x.numpy(), n_atoms, [0, 1, 2], bonds, torsion_map="marginal")
    return InternalFrame(**{**{k: v for k, v in cfg.items() if k != "kind"}, "torsion_cdf": cdf})


def test_round_trips_rigid_motions_and_chirality():
    n_atoms, bonds = TREES["branched"]
    x, _ = _gaussian_molecules(n_atoms, 500, seed=3)
    frame = build_flow({"transform": "affine", "layers": 2, "hidden": 8, "dtype": "float64",
                        "frame": fit_internal_frame(x.numpy(), n_atoms, [0, 1, 2], bonds)}).frame
    assert isinstance(frame, InternalFrame) and frame.dim == 3 * n_atoms - 6
    y = frame.to_latent(x)
    moved = (torch.einsum("bij,bnj->bni", random_rotations(500, torch.Generator().manual_seed(4)),
                          x.reshape(500, n_atoms, 3)) + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    assert torch.allclose(frame.to_latent(moved.reshape(500, -1)), y, atol=1e-9)
    back = frame.from_latent(y, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(frame.to_latent(back), y, atol=1e-9)
    assert back.reshape(500, n_atoms, 3).mean(dim=1).abs().max() < 1e-12
    dist = lambda p: torch.cdist(p.reshape(-1, n_atoms, 3), p.reshape(-1, n_atoms, 3))  # noqa: E731

    def handedness(p):
        p = p.reshape(-1, n_atoms, 3)
        return torch.linalg.det(torch.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]], dim=1)).sign()

    assert torch.allclose(dist(back), dist(x), atol=1e-10)       # the same molecule, mirror images excluded:
    assert torch.equal(handedness(back), handedness(x))          # distances alone would allow a reflection


def test_geometry_matches_mdtraj_and_placement_inverts_it():
    x, _ = _gaussian_molecules(4, 300, seed=6)
    p = x.reshape(300, 4, 3)
    traj = mdtraj.Trajectory(p.numpy().astype(np.float32), _tree_topology(4, [(0, 1), (1, 2), (2, 3)]))
    assert np.allclose(dihedral(p[:, 0], p[:, 1], p[:, 2], p[:, 3]).numpy(),
                       mdtraj.compute_dihedrals(traj, [[0, 1, 2, 3]], periodic=False)[:, 0], atol=1e-4)
    assert np.allclose(bond_angle(p[:, 0], p[:, 1], p[:, 2]).numpy(),
                       mdtraj.compute_angles(traj, [[0, 1, 2]], periodic=False)[:, 0], atol=1e-4)
    # place_atom is the inverse of (bond, angle, dihedral), also with the torsion reference
    # bonded to j (a sibling) instead of k
    for l in (p[:, 3], p[:, 1] + (p[:, 3] - p[:, 2])):
        bond, angle, torsion = (p[:, 0] - p[:, 1]).norm(dim=1), bond_angle(p[:, 0], p[:, 1], p[:, 2]), \
            dihedral(p[:, 0], p[:, 1], p[:, 2], l)
        assert torch.allclose(place_atom(p[:, 1], p[:, 2], l, bond, angle, torsion), p[:, 0], atol=1e-9)


def test_placement_jacobian_is_r2_sin_theta_per_atom():
    """The Jacobian of the atoms placed by the Z-matrix, with the reference triangle held fixed,
    by autograd: log|det| = sum_i 2 log r_i + log sin theta_i."""
    n_atoms, bonds = TREES["branched"]
    x, _ = _gaussian_molecules(n_atoms, 2000, seed=7)
    frame = InternalFrame(**{k: v for k, v in fit_internal_frame(x.numpy(), n_atoms, [0, 1, 2], bonds).items()
                             if k != "kind"})
    m = n_atoms - 3
    s0 = frame.internal_coordinates(x[:3])
    for s in s0:
        def placed(rest):
            pos = {0: torch.zeros(3, dtype=torch.float64), 1: torch.tensor([1.0, 0, 0], dtype=torch.float64),
                   2: torch.tensor([0.3, 0.9, 0], dtype=torch.float64)}
            for row, (i, j, k, l) in enumerate(frame.zmatrix.tolist()):
                pos[i] = place_atom(pos[j][None], pos[k][None], pos[l][None], rest[row][None], rest[m + row][None],
                                    rest[2 * m + row][None])[0]
            return torch.cat([pos[i] for i, *_ in frame.zmatrix.tolist()])

        rest = s[3:].clone()
        jac = torch.autograd.functional.jacobian(placed, rest)
        # columns in atom order (r_a, theta_a, phi_a), rows (x, y, z) per atom: triangular blocks
        perm = torch.tensor([c for row in range(m) for c in (row, m + row, 2 * m + row)])
        logdet = torch.linalg.slogdet(jac[:, perm])[1]
        expect = 2 * rest[:m].log().sum() + rest[m:2 * m].sin().log().sum()
        assert torch.allclose(logdet, expect, atol=1e-9)


def test_al2_zmatrix_places_every_atom_from_the_backbone():
    top = _al2_topology()
    bonds, heavy = topology_bonds(top)
    names = {a.index: f"{a.residue.name}{a.residue.index + 1}-{a.name}" for a in top.atoms()}
    rows = build_zmatrix(top.getNumAtoms(), bonds, [8, 6, 14], heavy)
    placed = [8, 6, 14] + [r[0] for r in rows]
    assert sorted(placed) == list(range(22))
    by_atom = {names[r[0]]: [names[a] for a in r[1:]] for r in rows}
    # phi (C of ACE about N-CA, against C) and psi (O of ALA about C-CA, against N) are free torsions
    assert by_atom["ACE1-C"] == ["ALA2-N", "ALA2-CA", "ALA2-C"]
    assert by_atom["ALA2-O"] == ["ALA2-C", "ALA2-CA", "ALA2-N"]
    # heavy atoms first, and the second and third methyl hydrogens are measured from the first
    heavy_rank = [heavy[a] for a in placed]
    assert heavy_rank == sorted(heavy_rank, reverse=True)
    assert by_atom["ALA2-HB2"][2] == "ALA2-HB1" and by_atom["ALA2-HB3"][2] == "ALA2-HB1"


def test_flow_log_prob_equals_the_sampled_log_density_and_checkpoints_round_trip(tmp_path):
    n_atoms, bonds = TREES["chain"]
    x, _ = _gaussian_molecules(n_atoms, 4000, seed=8)
    flow = build_flow({"transform": "spline", "layers": 4, "hidden": 16, "dtype": "float64",
                       "frame": latent_frame(x.numpy(), n_atoms, kind="internal", reference_atoms=[0, 1, 2],
                                             topology=_tree_topology(n_atoms, bonds))})
    with torch.no_grad():
        for p in flow.parameters():     # away from the identity
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(9), dtype=p.dtype))
        xs, log_q = flow.sample(512, generator=torch.Generator().manual_seed(10))
        ok = torch.isfinite(log_q)
        assert ok.sum() > 100
        assert torch.allclose(flow.log_prob(xs[ok]), log_q[ok], atol=1e-8)
    save_flow(flow, tmp_path / "model.pt")
    again, _ = load_flow(tmp_path / "model.pt")
    with torch.no_grad():
        assert torch.equal(again.log_prob(x[:50]), flow.log_prob(x[:50]))


def test_out_of_domain_proposals_are_counted_invalid_in_a_sample_set():
    n_atoms, bonds = TREES["chain"]
    x, _ = _gaussian_molecules(n_atoms, 4000, seed=11)
    flow = build_flow({"transform": "affine", "layers": 2, "hidden": 8, "dtype": "float64",
                       "frame": fit_internal_frame(x.numpy(), n_atoms, [0, 1, 2], bonds)})
    draw = draw_sample_set(flow, lambda q: -_gaussian_log_density(q, n_atoms), 5000, batch_size=1000, seed=0)
    assert draw.n_invalid > 0 and len(draw.energy) == 5000 - draw.n_invalid
    assert np.isfinite(draw.x).all() and np.isfinite(draw.log_q).all()


def _tree_topology(n_atoms, bonds):
    top = mdtraj.Topology()
    residue = top.add_residue("MOL", top.add_chain())
    atoms = [top.add_atom(f"C{i}", mdtraj.element.carbon, residue) for i in range(n_atoms)]
    for a, b in bonds:
        top.add_bond(atoms[a], atoms[b])
    return top


def test_bad_topologies_and_frames_are_refused():
    n_atoms, bonds = TREES["chain"]
    x, _ = _gaussian_molecules(n_atoms, 200, seed=12)
    with pytest.raises(ValueError, match=r"atoms \[4\] are not bonded"):
        build_zmatrix(n_atoms, bonds[:-1], [0, 1, 2])
    with pytest.raises(ValueError, match="must both be bonded to atom 0"):
        build_zmatrix(n_atoms, bonds, [0, 1, 3])
    with pytest.raises(ValueError, match="needs the topology"):
        latent_frame(x.numpy(), n_atoms, kind="internal", reference_atoms=[0, 1, 2])
    with pytest.raises(ValueError, match="more than 9 training frames"):
        fit_internal_frame(x[:8].numpy(), n_atoms, [0, 1, 2], bonds)
    cfg = fit_internal_frame(x.numpy(), n_atoms, [0, 1, 2], bonds)
    with pytest.raises(ValueError, match="'cut' must have shape"):
        build_flow({"transform": "affine", "frame": {**cfg, "cut": cfg["cut"][:1]}})
    with pytest.raises(ValueError, match="must be new and placed"):
        build_flow({"transform": "affine", "frame": {**cfg, "zmatrix": [[3, 1, 0, 2], [3, 2, 0, 1]]}})
