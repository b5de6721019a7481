"""Stage 10, head_tail: labels in bins of training frequency holding equal numbers of test positives (as the XC
literature draws it, the paper's Fig. 4), and each bin's share of P@5 and PSP@5 for the run's main MUFIN row,
MUFIN-(alpha=1), the paper's fusion and the best peer, from the test scores stage 07 saved (nothing is trained).
The paper reads its Fig. 4 as alpha = 1 better on the tail and full MUFIN on the head; `reading` says whether
this run shows it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..config import ranged
from ..layout import METRICS
from ..metrics import _drop, bin_contributions, equal_positive_bins
from ..report import write_metrics, write_table
from .peers import compared_rows

METRICS_SHOWN = ("P@5", "PSP@5")


@dataclass
class HeadTailParams:
    """Stage 10's parameters (notebook 10's parameters cell equals these defaults)."""
    bins: int = ranged(5, 2)  # bins of labels, head to tail, with equal numbers of test positives
    peers: int = ranged(1, 0)  # the strongest peers of stage 07 (by test P@5) beside MUFIN's rows


@dataclass
class HeadTailResult:
    bins: pd.DataFrame  # per bin: labels, training points per label (range), test positives
    table: pd.DataFrame  # per method and bin: its share of P@5 and PSP@5
    reading: dict  # per metric: the bins where MUFIN-(alpha=1) is above the main row, and where below
    summary: dict  # metrics.json


def stage(run, params: HeadTailParams) -> HeadTailResult:
    """Bin the labels, then each compared row's share of P@5 and PSP@5 per bin (the shares add up to the metric);
    writes fig4_head_tail.* tables (head_tail_bins, fig4_head_tail) and metrics.json."""
    out = run.stage("head_tail")
    test = run.split("test")
    ev = run.metrics("evaluate")
    inv_p = run.inv_propensity()  # the run's A, B, as stage 06 printed PSP
    train_freq = np.asarray((sp.csr_matrix(run.fit_labels) > 0).sum(0)).ravel()
    test_pos = np.asarray(_drop(sp.csr_matrix(test.Y) > 0, test.filter).sum(0)).ravel()
    label_bin = equal_positive_bins(train_freq, test_pos, params.bins)
    bins = pd.DataFrame([{"bin": b + 1, "labels": int((label_bin == b).sum()),
                          "train points per label": f"{int(train_freq[label_bin == b].min())}-{int(train_freq[label_bin == b].max())}"
                          if (label_bin == b).any() else "",
                          "test positives": int(test_pos[label_bin == b].sum())} for b in range(params.bins)])
    rows = compared_rows(run, params.peers)
    recs = []
    for name, method, _, scores in rows:
        c = bin_contributions(scores, test.Y, inv_p, test.filter, label_bin, params.bins)
        for b in range(params.bins):
            recs.append({"method": name, "bin": b + 1, **{m: round(float(c[m][b]), 4) for m in METRICS_SHOWN}})
    table = pd.DataFrame(recs)
    by = table.set_index(["method", "bin"])
    reading = {}
    for m in METRICS_SHOWN:
        diff = [by.loc[("MUFIN-(alpha=1)", b + 1), m] - by.loc[(rows[0].name, b + 1), m] for b in range(params.bins)]
        reading[m] = {"alpha1_above_main_in_bins": [b + 1 for b, d in enumerate(diff) if d > 0],
                      "alpha1_below_main_in_bins": [b + 1 for b, d in enumerate(diff) if d < 0],
                      "alpha1_minus_main_per_bin": [round(float(d), 4) for d in diff],
                      # the paper's reading: alpha = 1 above on the tail bin, below on the head bin
                      "paper_reading_holds": bool(diff[-1] > 0 and diff[0] < 0)}
    write_table(bins, out, "head_tail_bins", caption=f"Label bins, head (1) to tail, equal test positives ({run.data_title})")
    write_table(table, out, "fig4_head_tail",
                caption=f"Each bin's share of P@5 and PSP@5 (the bins add up to the metric), test split ({run.data_title})")
    summary = {"data": run.data_title, "synthetic": run.synthetic, "bins": bins.to_dict("records"),
               "methods": {r.name: r.method for r in rows}, "A": ev["A"], "B": ev["B"],
               "contributions": table.to_dict("records"), "reading": reading}
    write_metrics(out, summary, METRICS)
    return HeadTailResult(bins, table, reading, summary)
