"""The flowMC-EBM model: a tilted energy-based model ``p_theta(x) = exp(-E_theta(x)) rho(x) / Z_theta``
with ``rho = N(0, s^2 I)``, its saving and loading beside the companion flow, and its log-density
on a grid (Grenioux, Moulines, Gabrie, "Balanced training of energy-based models with adaptive
flow sampling", arXiv 2306.00684).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from boltzflow.evaluation import mode_weights
from boltzflow.flows import build_flow
from boltzflow.io import ArtifactError, atomic_path

__all__ = ["EnergyNet", "TiltedEBM", "build_ebm", "save_ebm_model", "load_ebm_model", "grid_log_density",
           "ebm_mode_weights"]

_LOG_2PI = math.log(2.0 * math.pi)
_ACTIVATIONS = {"silu": nn.SiLU, "elu": nn.ELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


class EnergyNet(nn.Module):
    """An MLP energy ``E(x)``: ``depth`` hidden layers of ``hidden`` units, scalar output that starts at 0.

    >>> EnergyNet(2, hidden=8, depth=1)(torch.zeros(3, 2))  # the zero output layer: E = 0 at the start
    tensor([0., 0., 0.], grad_fn=<SqueezeBackward1>)
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, activation: str = "silu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(_ACTIVATIONS)}")
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"dim, hidden and depth must be >= 1, got {dim}, {hidden}, {depth}")
        widths = [dim] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x)).squeeze(-1)



class TiltedEBM(nn.Module):
    """``log p(x) = -E(x) + log N(x; 0, s^2 I)`` up to ``log Z`` (see the module docstring).

    >>> ebm = build_ebm({"dim": 2, "hidden": 8, "depth": 1, "base_scale": 1.0})
    >>> ebm.log_prob64(torch.zeros(1, 2))  # log N(0; 0, I) in 2-D
    tensor([-1.8379], dtype=torch.float64)
    """

    def __init__(self, energy: EnergyNet, base_scale: float, config: Mapping[str, Any]):
        super().__init__()
        if not (math.isfinite(base_scale) and base_scale > 0):
            raise ValueError(f"base_scale must be finite and > 0, got {base_scale}")
        self.energy = energy
        self.base_scale = float(base_scale)
        self._config = dict(config)

    @property
    def dim(self) -> int:
        return self.energy.dim

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def log_base(self, x: torch.Tensor) -> torch.Tensor:
        s = self.base_scale
        return -0.5 * (x / s).square().sum(-1) - x.shape[-1] * (math.log(s) + 0.5 * _LOG_2PI)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-density in the network's dtype (differentiable; what the MCMC targets)."""
        x = x.to(self.energy.out.weight.dtype)
        return -self.energy(x) + self.log_base(x)

    @torch.no_grad()
    def log_prob64(self, x: torch.Tensor, chunk: int = 65_536) -> torch.Tensor:
        """Unnormalised log-density in float64 (the network's output promoted, the base in float64)."""
        parts = []
        for rows in x.split(chunk):
            e = self.energy(rows.to(self.energy.out.weight.dtype)).to(torch.float64)
            parts.append(-e + self.log_base(rows.to(torch.float64)))
        return torch.cat(parts)



def build_ebm(config: Mapping[str, Any]) -> TiltedEBM:
    """A :class:`TiltedEBM` from ``{"dim", "hidden", "depth", "activation", "base_scale"}``."""
    cfg = {"hidden": 128, "depth": 3, "activation": "silu", **dict(config)}
    known = {"dim", "hidden", "depth", "activation", "base_scale"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown EBM setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    missing = sorted({"dim", "base_scale"} - set(cfg))
    if missing:
        raise ValueError(f"EBM config needs {', '.join(missing)}")
    net = EnergyNet(int(cfg["dim"]), int(cfg["hidden"]), int(cfg["depth"]), str(cfg["activation"]))
    return TiltedEBM(net, float(cfg["base_scale"]), cfg)



def save_ebm_model(path: str | Path, ebm: TiltedEBM, flow: nn.Module, extra: Mapping[str, Any] | None = None) -> None:
    """Write the EBM and its flow as plain tensors plus JSON-able configs (atomically)."""

    payload = {"ebm_config": ebm.config(), "ebm_state": ebm.state_dict(),
               "flow_config": flow.config(), "flow_state": flow.state_dict(), **(dict(extra) if extra else {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)



def load_ebm_model(path: str | Path) -> tuple[TiltedEBM, nn.Module, dict[str, Any]]:
    """``(ebm, flow, rest_of_payload)`` from :func:`save_ebm_model` (``weights_only=True``)."""

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ArtifactError(f"{path}: not a readable EBM checkpoint ({err})") from err
    needed = {"ebm_config", "ebm_state", "flow_config", "flow_state"}
    if not isinstance(payload, dict) or not needed <= set(payload):
        raise ArtifactError(f"{path}: an EBM checkpoint needs entries {', '.join(sorted(needed))}")
    try:
        ebm = build_ebm(payload["ebm_config"])
        ebm.load_state_dict(payload["ebm_state"])
        flow = build_flow(payload["flow_config"])
        flow.load_state_dict(payload["flow_state"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ArtifactError(f"{path}: the saved weights do not fit the saved architecture ({err})") from err
    ebm.eval()
    flow.eval()
    rest = {k: v for k, v in payload.items() if k not in needed}
    return ebm, flow, rest



def grid_log_density(log_prob64, lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Points of an ``n x n`` grid over the box ``[lo, hi]`` (2-D), the log-density normalised on
    the grid (a Riemann sum of ``exp(log_prob64)``), and the cell area."""
    xs = np.linspace(lo[0], hi[0], n)
    ys = np.linspace(lo[1], hi[1], n)
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)
    cell = float((xs[1] - xs[0]) * (ys[1] - ys[0]))
    lp = log_prob64(torch.as_tensor(grid, dtype=torch.float64)).cpu().numpy()
    finite = np.isfinite(lp)
    lp_norm = lp - (np.logaddexp.reduce(lp[finite]) + math.log(cell))
    return grid, lp_norm, cell



def ebm_mode_weights(ebm: TiltedEBM, bank: torch.Tensor, centres: np.ndarray,
                      box: tuple[np.ndarray, np.ndarray] | None, grid_points: int) -> np.ndarray:
    if ebm.dim == 2 and box is not None:
        grid, lp, _ = grid_log_density(ebm.log_prob64, box[0], box[1], grid_points)
        return mode_weights(grid, centres, log_w=lp)
    return mode_weights(bank.numpy(), centres)
