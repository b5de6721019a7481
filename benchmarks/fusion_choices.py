"""Investigation: which of stage 06's options a preset should turn on, decided on validation alone.

The rule (written before any test split was scored with it; REPRODUCE.md): each configuration's weights are tuned
on the val-alpha half as stage 06 tunes them, then scored on the other half, val-epoch, which none of the weights
saw. The configuration with the best held-out metric (stage 06's alpha_metric) is the choice; a tie keeps the
simpler one (the earlier in CONFIGS). The test split is never read here. Writes
runs/benchmarks/fusion_choices.json (the rule, and one result per run, merged with earlier ones).

    python benchmarks/fusion_choices.py --run runs/<id> [--run runs/<id2> ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mufin_lib.artifacts import open_run  # noqa: E402
from mufin_lib.fusion import added, fuse, label_bins, tune_alpha, tune_alpha_bins, tune_terms  # noqa: E402
from mufin_lib.metrics import evaluate  # noqa: E402
from mufin_lib.paths import RUNS_DIR, atomic_write  # noqa: E402
from mufin_lib.stages.evaluate import score_split, split_terms  # noqa: E402

# simplest first: (name, stage 06 parameters)
CONFIGS = [
    ("the paper's score (alpha)", {"votes": False, "prior": False, "frequency_bins": "", "vote_neighbours": 20}),
    ("+ log-popularity", {"votes": False, "prior": True, "frequency_bins": "", "vote_neighbours": 20}),
    ("+ votes (20)", {"votes": True, "prior": False, "frequency_bins": "", "vote_neighbours": 20}),
    ("+ votes (20) + log-popularity", {"votes": True, "prior": True, "frequency_bins": "", "vote_neighbours": 20}),
    ("+ votes (50) + log-popularity", {"votes": True, "prior": True, "frequency_bins": "", "vote_neighbours": 50}),
    ("+ votes (20) + log-popularity, alpha per bin 2,5,20",
     {"votes": True, "prior": True, "frequency_bins": "2,5,20", "vote_neighbours": 20}),
]
OUT = RUNS_DIR / "benchmarks" / "fusion_choices.json"


def choose(run) -> dict:
    metric = run.alpha_record["metric"]
    inv_p = run.inv_propensity(tuning=True)
    halves = {h: (run.split(h), *score_split(run, h)) for h in ("val-alpha", "val-epoch")}
    (tv, e, r, sl), (hv, e2, r2, sl2) = halves["val-alpha"], halves["val-epoch"]
    terms_of = {n: (split_terms(run, "val-alpha", sl, n), split_terms(run, "val-epoch", sl2, n))
                for n in {c["vote_neighbours"] for _, c in CONFIGS}}  # once per neighbourhood, not per configuration
    rows = []
    for name, c in CONFIGS:
        (v, p), (v2, p2) = terms_of[c["vote_neighbours"]]
        if c["votes"] or c["prior"]:
            terms = tune_terms(e, r, sl, v, p, tv.Y, tv.filter, inv_p, metric, c["votes"], c["prior"])
            alpha, extra, extra2 = terms["alpha"], added(terms, v, p), added(terms, v2, p2)
            weights = {k: terms[k] for k in ("alpha", "vote_weight", "prior_weight")}
        else:
            alpha, _ = tune_alpha(e, r, sl, tv.Y, tv.filter, inv_p, metric=metric)
            extra = extra2 = 0.0
            weights = {"alpha": alpha}
        a2 = alpha
        if c["frequency_bins"]:
            bins, names = label_bins(run.fit_labels, c["frequency_bins"])
            per_bin, _ = tune_alpha_bins(e, r, sl, tv.Y, tv.filter, inv_p, bins, len(names), alpha, metric=metric,
                                         extra=extra)
            alpha, a2 = per_bin[bins], per_bin[bins]
            weights["bin_alphas"] = [float(x) for x in per_bin]
        tuned = evaluate(fuse(e, r, sl, alpha, tv.Y.shape[1], extra), tv.Y, inv_p, tv.filter)[metric]
        held = evaluate(fuse(e2, r2, sl2, a2, hv.Y.shape[1], extra2), hv.Y, inv_p, hv.filter)[metric]
        rows.append({"configuration": name, "params": c, "weights": weights,
                     f"val-alpha {metric} (tuned on)": tuned, f"val-epoch {metric} (held out)": held})
    best = max(range(len(rows)), key=lambda i: (rows[i][f"val-epoch {metric} (held out)"], -i))
    return {"run": run.dir.name, "data": run.data_title, "metric": metric, "points": {
        h: len(s[0].uids) for h, s in halves.items()}, "rows": rows, "choice": rows[best]["configuration"],
        "choice_params": rows[best]["params"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", required=True)
    args = ap.parse_args(argv)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    by_run = {r["run"]: r for r in old.get("results", [])}
    for r in args.run:
        res = choose(open_run(r))
        by_run[res["run"]] = res
        m = res["metric"]
        print(f"{res['run']} ({res['data']}; {res['points']}): choice: {res['choice']}")
        for row in res["rows"]:
            print(f"  {row['configuration']:55s} tuned {row[f'val-alpha {m} (tuned on)']:6.2f}"
                  f"  held out {row[f'val-epoch {m} (held out)']:6.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(OUT) as f:
        f.write(json.dumps({"benchmark": "fusion_choices", "rule": __doc__.split("\n\n")[1],
                            "results": list(by_run.values())}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
