"""Reflow pairs for RegFlow: prior draws and their images under a trained flow-matching CNF."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from boltzflow.cnf import integrate

__all__ = ["cnf_pairs"]


def cnf_pairs(
    model: torch.nn.Module,
    n_pairs: int | None = None,
    *,
    x0: np.ndarray | torch.Tensor | None = None,
    batch_size: int = 4096,
    seed: int = 0,
    method: str = "dopri5",
    atol: float = 1e-5,
    rtol: float = 1e-5,
    steps: int = 100,
    log: logging.Logger | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Reflow pairs ``(x0, phi(x0))`` under the CNF's flow map ``phi`` (t = 0 to 1, in batches).

    ``x0`` is ``n_pairs`` seeded prior draws ``N(0, I)`` (teacher pairs for RegFlow), or the given
    points ``(n, d)`` (e.g. state-A points for a state CNF that carries A onto B). ``method``: an
    adaptive torchdiffeq solver (``atol``, ``rtol``) or a fixed-step one (``steps``). Returns
    float32 ``x0``, ``x1`` and the seconds taken.
    """
    log = log or logging.getLogger("boltzflow.couplings")
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    if x0 is not None:
        points = torch.as_tensor(np.asarray(x0, dtype=np.float64), dtype=torch.float32)
        n_pairs = len(points)
    elif n_pairs is None:
        raise ValueError("cnf_pairs needs n_pairs or the points x0")
    out0, out1 = [], []
    start = time.time()
    done = 0
    while done < n_pairs:
        take = min(batch_size, n_pairs - done)
        if x0 is None:
            chunk = torch.randn(take, model.dim, generator=gen, dtype=dtype)
        else:
            chunk = points[done:done + take]
        x1 = integrate(model, chunk, method=method, atol=atol, rtol=rtol, steps=steps, batch_size=batch_size)
        out0.append(chunk.numpy().astype(np.float32))
        out1.append(x1.numpy().astype(np.float32))
        done += take
        elapsed = time.time() - start
        log.info("reflow pairs %d/%d (%.0f%%), %.0f pairs/s, ETA %.0f s", done, n_pairs, 100.0 * done / n_pairs,
                 done / elapsed, (n_pairs - done) * elapsed / done)
    return np.concatenate(out0), np.concatenate(out1), {"seconds": time.time() - start}

