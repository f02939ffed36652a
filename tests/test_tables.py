"""Seed summaries in the tables: intervals over seeds, non-finite values kept visible, Markdown cells."""

import math

import numpy as np
import pandas as pd
import pytest
from boltzflow.evaluation import (
    ebm_table,
    flow_table,
    markdown_ebm_mode_weights,
    markdown_ebm_rhat,
    markdown_flow_table,
)


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


def test_flow_table_has_the_heldout_log_likelihood_and_the_invalid_fraction():
    """The held-out log q keeps its hundredths in Markdown; the invalid fraction comes from the
    proposals left out of the sample set (n_invalid of n_drawn)."""
    rows = [pd.DataFrame({"system": "al2", "architecture": "spline", "method": "mle", "seed": [0, 1, 2],
                          "ess": [0.15, 0.2, 0.22], "test_log_q": [218.596, 218.586, 218.588],
                          "n_drawn": 50_000, "n_invalid": [1045, 1130, 1100], "invertibility_flagged": False})]
    table = flow_table(rows)
    row = table.iloc[0]
    assert row["invalid_rate_mean"] == pytest.approx(np.mean([1045, 1130, 1100]) / 50_000, rel=1e-12)
    assert 218.586 <= row["test_log_q_low"] < row["test_log_q_mean"] < row["test_log_q_high"] <= 218.596
    text = markdown_flow_table(table, system="al2", tolerance=1e-3)
    assert "| ESS | test log q | invalid |" in text
    assert "| 218.59 [218.59, 218.60] | 0.02183 [0.0209, 0.0226] |" in text
