"""Measurement: does Module IV's label side stored in float16 (fusion.label_side; prediction's choice beyond 4 GiB)
change P@k? On a finished run's validation split (no test point is read): every shortlisted pair scored with the
label side in float32 and in float16, then P@1 / P@5 of Module IV alone (alpha = 0: where float16 could matter most)
and of the paper's score at the run's alpha, and the largest score difference. Writes
runs/benchmarks/label_side_precision.json (one result per run, merged with earlier ones; stage 11 tabulates it).

    python benchmarks/label_side_precision.py --run runs/<id> [--run runs/<id2> ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mufin_lib.artifacts import open_run  # noqa: E402
from mufin_lib.fusion import fuse, score_shortlists  # noqa: E402
from mufin_lib.metrics import evaluate  # noqa: E402
from mufin_lib.paths import RUNS_DIR, atomic_write  # noqa: E402

OUT = RUNS_DIR / "benchmarks" / "label_side_precision.json"


def measure(run) -> dict:
    split = run.split("val")
    _, sl = run.shortlists("val")
    rows = run.bags.rows_of(split.uids)
    inv_p = run.inv_propensity(tuning=True)
    alpha = float(run.alpha_record["alpha"])
    out = {"run": str(run.dir), "data": run.data_title, "synthetic": run.synthetic, "split": "val",
           "points": len(split.uids), "paper_alpha": alpha}
    scores = {}
    for name, dtype in (("float32", torch.float32), ("float16", torch.float16)):
        t = time.perf_counter()
        e, r = score_shortlists(run.ranker, run.bags, rows, run.label_rows, sl, module1=run.module1, side_dtype=dtype)
        scores[name] = r
        res = {"score_s": round(time.perf_counter() - t, 1)}
        for row, a in (("Module IV alone (alpha=0)", 0.0), (f"the paper's score (alpha={alpha:g})", alpha)):
            m = evaluate(fuse(e, r, sl, a, len(run.label_rows)), split.Y, inv_p, ks=(1, 5), filt=split.filter)
            res[row] = {k: round(float(m[k]), 3) for k in ("P@1", "P@5")}
        out[name] = res
    ok = sl >= 0
    out["max_abs_score_diff"] = float(np.abs(scores["float16"][ok] - scores["float32"][ok]).max()) if ok.any() else 0.0
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True)
    a = ap.parse_args()
    done = {r["run"]: r for r in (json.loads(OUT.read_text())["results"] if OUT.exists() else [])}
    for r in a.run:
        res = measure(open_run(r))
        print(json.dumps(res, indent=1))
        done[res["run"]] = res
    with atomic_write(OUT) as f:
        json.dump({"benchmark": "label_side_precision", "results": list(done.values())}, f, indent=1)


if __name__ == "__main__":
    main()
