"""Seed summaries in the tables: intervals over seeds, non-finite values kept visible, Markdown cells."""

import math

import numpy as np
import pandas as pd
from boltzflow.evaluation import ebm_table, markdown_ebm_mode_weights, markdown_ebm_rhat


def _rows(dataset, method, rhat, mse=None, dim=2):
    frame = pd.DataFrame({"dataset": dataset, "method": method, "seed": range(len(rhat)), "dim": dim,
                          "rhat_max": rhat})
    if mse is not None:
        frame["mse_ebm"] = mse
    return frame


def test_ebm_table_summarises_seeds_and_keeps_non_finite_values_visible():
    table = ebm_table([_rows("mixture2d_weights", "flowmc", [1.01, 1.03, 1.02], mse=[1e-4, 3e-4, 2e-4]),
                       _rows("gmm4_d16", "ula", [7.0, math.inf], dim=16)])
    flow = table[table.method == "flowmc"].iloc[0]
    assert flow["seeds"] == 3 and flow["rhat_max_mean"] == np.mean([1.01, 1.03, 1.02])
    assert 1.01 <= flow["rhat_max_low"] < flow["rhat_max_mean"] < flow["rhat_max_high"] <= 1.03
    ula = table[table.method == "ula"].iloc[0]
    assert math.isinf(ula["rhat_max_mean"]) and (ula["rhat_max_low"], ula["rhat_max_high"]) == (7.0, math.inf)
    assert math.isnan(ula["mse_ebm_mean"])  # the 16-D rows have no mode-weight MSE
    rhat = markdown_ebm_rhat(table)
    assert "| flowMC-EBM | 1.02 [1.01, 1.03] | - |" in rhat and "| ULA-EBM | - | inf [7, inf] |" in rhat
    weights = markdown_ebm_mode_weights(table)
    assert "| mixture2d_weights | flowMC-EBM | - | - | 0.0002 [0.0001, 0.0003] | - |" in weights
    assert "| gmm4_d16 |" not in weights
