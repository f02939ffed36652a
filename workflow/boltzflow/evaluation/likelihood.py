"""The log-likelihood of held-out data under a sampler with an exact density: the forward-KL view
of a Boltzmann generator, beside the importance weights of its own proposals.

``E_p[log q]`` over MD test frames differs from ``-KL(p || q)`` by the entropy of the data only,
so two models' means on the same frames compare their forward KL directly (a paired difference);
a RegFlow student can at best match its teacher's (the RegFlow paper's Proposition 2).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

__all__ = ["heldout_log_likelihood"]


def heldout_log_likelihood(log_prob: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, *,
                           batch_size: int = 1000) -> dict[str, float]:
    """Mean ``log q`` (float64, nats) of held-out points ``x`` ``(n, d)`` under ``log_prob``.

    Returns ``test_log_q`` (the mean over the points with a finite ``log q``), ``test_log_q_se``
    (its standard error), ``test_log_q_finite`` (the fraction of points with a finite ``log q``:
    in the internal frame a frame beyond a torsion cut has none, the same frames for every model of
    one frame) and ``n_test_frames``. A NaN or ``+inf`` log-density is an error of the model, not
    of the data, and raises ``ValueError``.
    """
    x = np.asarray(x)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"held-out points must have shape (n, d) with n >= 1, got {x.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    values = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.as_tensor(x[start:start + batch_size], dtype=torch.float64)
            values.append(log_prob(batch).detach().to("cpu", torch.float64).reshape(-1))
    log_q = torch.cat(values).numpy()
    if len(log_q) != len(x):
        raise ValueError(f"log_prob returned {len(log_q)} values for {len(x)} points")
    if np.isnan(log_q).any() or (log_q == np.inf).any():
        raise ValueError(f"log_prob gave {int(np.isnan(log_q).sum())} NaN and {int((log_q == np.inf).sum())} +inf "
                         "values on held-out points")
    finite = log_q[np.isfinite(log_q)]
    mean = float(finite.mean()) if len(finite) else -math.inf
    se = float(finite.std(ddof=1) / math.sqrt(len(finite))) if len(finite) > 1 else math.nan
    return {"test_log_q": mean, "test_log_q_se": se, "test_log_q_finite": len(finite) / len(x),
            "n_test_frames": int(len(x))}
