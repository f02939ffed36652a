"""Importance-sampling diagnostics shared by every sampler (computed in float64).

- Kish effective sample size, normalised: ``ESS / N = (sum w)^2 / (N sum w^2)`` with
  ``w = exp(log_w)``, evaluated as ``exp(2 logsumexp(lw) - logsumexp(2 lw)) / N``; a log-weight of
  ``-inf`` (a sample the target gives zero density) counts as weight 0, a NaN is an error.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["kish_ess"]


def kish_ess(log_w: np.ndarray | torch.Tensor) -> float:
    """Normalised Kish ESS in ``[0, 1]`` of unnormalised log importance weights."""
    lw = torch.as_tensor(np.asarray(log_w) if not isinstance(log_w, torch.Tensor) else log_w).to(torch.float64)
    lw = lw.reshape(-1)
    if lw.numel() == 0:
        raise ValueError("no log-weights")
    if torch.isnan(lw).any() or (lw == torch.inf).any():
        raise ValueError(f"{int(torch.isnan(lw).sum())} NaN and {int((lw == torch.inf).sum())} +inf log-weights; "
                         "drop or fix them first (and report how many)")
    if (lw == -torch.inf).all():
        return 0.0
    return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)) / lw.numel())
