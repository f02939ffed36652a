"""An E(n)-equivariant drift network for particle systems (LJ clusters), after Satorras et al.
(ICML 2021), as the SGDS paper uses for LJ-13 / LJ-55 and peptides."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EGNNDrift", "EGNNInvariantFeatures", "remove_mean"]


def remove_mean(x: torch.Tensor, n_particles: int, spatial_dim: int) -> torch.Tensor:
    """``x`` ``(B, n * s)`` with each configuration's centre of mass moved to the origin."""
    pos = x.reshape(len(x), n_particles, spatial_dim)
    return (pos - pos.mean(1, keepdim=True)).reshape(len(x), -1)


def _mlp(width_in: int, hidden: int, width_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width_in, hidden), nn.SiLU(), nn.Linear(hidden, width_out))


class _EquivariantLayer(nn.Module):
    def __init__(self, hidden: int, time_features: int):
        super().__init__()
        # the edge MLP's first layer on [h_i, h_j, |x_i - x_j|^2, t] is split into per-particle
        # projections that are broadcast over the pairs: O(n H^2) work instead of O(n^2 H^2)
        self.edge_i = nn.Linear(hidden, hidden)
        self.edge_j = nn.Linear(hidden, hidden, bias=False)
        self.edge_d = nn.Linear(1, hidden, bias=False)
        self.edge_t = nn.Linear(time_features, hidden, bias=False) if time_features else None  # None: no time input
        self.edge_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.coordinate = _mlp(hidden, hidden, 1)
        nn.init.zeros_(self.coordinate[-1].weight)
        nn.init.zeros_(self.coordinate[-1].bias)
        self.node = _mlp(2 * hidden, hidden, hidden)

    def forward(self, h: torch.Tensor, pos: torch.Tensor, time: torch.Tensor | None,
                off_diagonal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = h.shape[1]
        diff = pos[:, :, None] - pos[:, None]  # (B, n, n, s)
        dist2 = diff.square().sum(-1, keepdim=True)
        first = self.edge_i(h)[:, :, None] + self.edge_j(h)[:, None] + self.edge_d(dist2)
        if self.edge_t is not None:
            first = first + self.edge_t(time)[:, None, None]
        messages = self.edge_out(first) * off_diagonal
        # sqrt'(0) is infinite (and inf * 0 = NaN): a pair with itself, and every pair at t = 0,
        # where the walk starts with all particles at the origin
        dist = (dist2 + 1e-8).sqrt()
        step = diff / (dist + 1.0) * self.coordinate(messages) * off_diagonal
        pos = pos + step.sum(2) / max(n - 1, 1)
        h = h + self.node(torch.cat([h, messages.sum(2)], dim=-1))
        return h, pos


class EGNNDrift(nn.Module):
    """Equivariant drift ``u(x, t)`` for ``n_particles`` particles in ``spatial_dim`` dimensions,
    ``layers`` equivariant layers of width ``hidden``, ``harmonics`` sinusoidal time features.

    Points are flattened ``(B, n * s)`` configurations of ``n`` identical particles in ``s``
    dimensions. Every particle carries a feature vector ``h_i`` that starts as an embedding of the
    time (the particles are identical, so nothing else tells them apart); each layer updates

    - messages ``m_ij = phi_e(h_i, h_j, |x_i - x_j|^2, t)`` for ``i != j``;
    - positions ``x_i <- x_i + (1 / (n - 1)) sum_j (x_i - x_j) / (|x_i - x_j| + 1) * phi_x(m_ij)``;
    - features ``h_i <- h_i + phi_h(h_i, sum_j m_ij)``.

    The drift is the total displacement ``x_out - x_in`` with its centre of mass removed, so it is
    equivariant to rotations, reflections and permutations of the particles, invariant to
    translations, and keeps the diffusion on the centre-of-mass-free subspace. The last layer of
    every ``phi_x`` starts at zero: a new network has zero drift (plain Brownian motion), as the
    PIS-style MLP.

    >>> import torch
    >>> drift = EGNNDrift(n_particles=4, spatial_dim=3, hidden=16, layers=2)
    >>> u = drift(torch.randn(2, 12), torch.tensor(0.3))
    >>> u.shape, bool(u.reshape(2, 4, 3).sum(1).abs().max() < 1e-5)  # no centre-of-mass drift
    (torch.Size([2, 12]), True)
    """

    def __init__(self, n_particles: int, spatial_dim: int, hidden: int = 64, layers: int = 5, harmonics: int = 16,
                 node_types: tuple[int, ...] | None = None):
        super().__init__()
        if n_particles < 2 or min(spatial_dim, hidden, layers, harmonics) < 1:
            raise ValueError(f"EGNN needs n_particles >= 2 and positive sizes, got {n_particles}, {spatial_dim}, "
                             f"{hidden}, {layers}, {harmonics}")
        if node_types is not None and (len(node_types) != n_particles or min(node_types) < 0):
            raise ValueError(f"node_types needs one label >= 0 per particle ({n_particles}), got {len(node_types)}")
        # labels of non-identical particles (the atoms of a molecule): an embedding added to the
        # features, so only permutations within a label stay symmetries
        self.node_types = None if node_types is None else tuple(int(v) for v in node_types)
        if self.node_types is not None:
            self.type_embedding = nn.Embedding(max(self.node_types) + 1, hidden)
            self.register_buffer("type_index", torch.tensor(self.node_types, dtype=torch.long))
        self.n_particles, self.spatial_dim = int(n_particles), int(spatial_dim)
        self.dim = self.n_particles * self.spatial_dim
        self.hidden, self.layers_count = int(hidden), int(layers)
        self.register_buffer("frequencies", torch.linspace(0.1, 100.0, harmonics))
        self.embed = nn.Sequential(nn.Linear(2 * harmonics, hidden), nn.SiLU())
        self.layers = nn.ModuleList(_EquivariantLayer(hidden, 2 * harmonics) for _ in range(layers))
        self.register_buffer("off_diagonal", (1.0 - torch.eye(n_particles))[None, :, :, None])

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = len(x)
        angles = t.reshape(-1, 1).to(x.dtype) * self.frequencies.to(x.dtype)
        time = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).expand(b, -1)
        h = self.embed(time)[:, None].expand(b, self.n_particles, self.hidden)
        if self.node_types is not None:
            h = h + self.type_embedding(self.type_index).to(x.dtype)[None]
        start = x.reshape(b, self.n_particles, self.spatial_dim)
        pos = start
        mask = self.off_diagonal.to(x.dtype)
        for layer in self.layers:
            h, pos = layer(h, pos, time, mask)
        return remove_mean((pos - start).reshape(b, -1), self.n_particles, self.spatial_dim)


class EGNNInvariantFeatures(nn.Module):
    """Per-particle features ``(B, n * out)`` of ``layers`` EGNN layers without time input: invariant
    to rotations, reflections and translations, and permuted with the particles (within a label
    when ``node_types`` is given). The sum of squares of two such outputs' difference is then a
    symmetric function of the configuration: the SGDS paper's RND networks for LJ and peptides.
    The features start from a learned (random) vector per particle label."""

    def __init__(self, n_particles: int, spatial_dim: int, hidden: int = 64, layers: int = 2, out: int | None = None,
                 node_types: tuple[int, ...] | None = None):
        super().__init__()
        if n_particles < 2 or min(spatial_dim, hidden, layers) < 1:
            raise ValueError(f"EGNN needs n_particles >= 2 and positive sizes, got {n_particles}, {spatial_dim}, "
                             f"{hidden}, {layers}")
        labels = tuple(int(v) for v in node_types) if node_types is not None else (0,) * n_particles
        if len(labels) != n_particles or min(labels) < 0:
            raise ValueError(f"node_types needs one label >= 0 per particle ({n_particles}), got {len(labels)}")
        self.n_particles, self.spatial_dim = int(n_particles), int(spatial_dim)
        self.start = nn.Embedding(max(labels) + 1, hidden)
        self.register_buffer("labels", torch.tensor(labels, dtype=torch.long))
        self.layers = nn.ModuleList(_EquivariantLayer(hidden, 0) for _ in range(layers))
        self.out = nn.Linear(hidden, out or spatial_dim)
        self.register_buffer("off_diagonal", (1.0 - torch.eye(n_particles))[None, :, :, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = len(x)
        pos = x.reshape(b, self.n_particles, self.spatial_dim)
        h = self.start(self.labels).to(x.dtype)[None].expand(b, -1, -1)
        mask = self.off_diagonal.to(x.dtype)
        for layer in self.layers:
            h, pos = layer(h, pos, None, mask)
        return self.out(h).reshape(b, -1)
