"""Benchmark: does each part's gain grow with the training data? The paper measured its gains with 586K training
points, about 16 per label; the real sets here have 4-11. For each share of the fit points (Module I's `fit_share`:
the validation points and the test split stay the same, a smaller share's points are among a larger one's), the chain
01-07 runs through the runner (stages reused where their key matches), and this script reads, on the same test
points: Module I alone, Module IV alone, the paper's score, alpha = 1 plus the added terms (no Module IV), the votes
alone, the kit's score, and the peers stage 07 ran (`--peers`, tuned as stage 07 tunes them). Each row's P@1 comes
with a 95% bootstrap interval over test points, and two paired differences with theirs: the paper's score minus
Module I (does Module IV earn its keep in the paper's score?) and the kit's score minus its no-Module-IV row.
Writes runs/benchmarks/data_size.json; notebook 08 plots it. Not part of `make reproduce`.

    python benchmarks/data_size.py --preset hm [--shares 0.25,0.5,1] [--peers tfidf-plt,tfidf-plt-beam]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mufin_lib.artifacts import open_run  # noqa: E402
from mufin_lib.layout import TEST_SCORES  # noqa: E402
from mufin_lib.metrics import evaluate, paired_bootstrap, point_parts  # noqa: E402
from mufin_lib.paths import RUNS_DIR, atomic_write  # noqa: E402
from mufin_lib.report import load_scores  # noqa: E402

OUT = RUNS_DIR / "benchmarks" / "data_size.json"
CHAIN = "01,02,03,04,05,06,07"


def interval(parts, n: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric from its per-point parts (numerators, denominators)."""
    num, den = parts
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n, len(num)))
    vals = 100 * num[idx].sum(1) / np.maximum(den[idx].sum(1), 1e-12)
    lo, hi = np.percentile(vals, [50 * (1 - level), 100 - 50 * (1 - level)])
    return round(float(lo), 4), round(float(hi), 4)


def rows_of(run_dir: Path, bootstrap: int, seed: int) -> dict:
    run = open_run(run_dir)
    test, inv_p = run.split("test"), run.inv_propensity()
    ev = run.metrics("evaluate")
    scores = {k: v[1] for k, v in load_scores(run.need("evaluate", TEST_SCORES)).items()}
    peers = {k: v for k, (fam, v) in load_scores(run.need("peers", TEST_SCORES)).items() if fam == "peer"}
    named = {"Module I alone": "Module I only (exact NN)", "Module IV alone": "Module IV only (alpha=0)",
             "the paper's score (alpha)": ev["paper_fusion"], "the kit's score": ev["mufin"]}
    named.update({("no Module IV (alpha = 1 + added terms)" if k.endswith("(no Module IV)") else "votes alone"): k
                  for k in scores if k.endswith("(no Module IV)") or k.startswith("training-point votes alone")})
    table = {**{short: scores[k] for short, k in named.items()}, **peers}
    parts = {k: point_parts(S, test.Y, inv_p, test.filter, "P@1") for k, S in table.items()}
    rows = []
    for k, S in table.items():
        lo, hi = interval(parts[k], bootstrap, seed)
        rows.append({"row": k, "method": named.get(k, k), "family": "peer" if k in peers else "MUFIN",
                     "P@1": evaluate(S, test.Y, inv_p, test.filter)["P@1"], "P@1 lo": lo, "P@1 hi": hi})
    diffs = {}
    for name, a, b in (("paper's score - Module I", "the paper's score (alpha)", "Module I alone"),
                       ("kit's score - no Module IV", "the kit's score", "no Module IV (alpha = 1 + added terms)")):
        if a in parts and b in parts:
            diffs[name] = paired_bootstrap(parts[a], parts[b], bootstrap, seed)
    fit = run.fit_labels
    return {"run": run_dir.name, "fit_points": int(fit.shape[0]), "labels": int(fit.shape[1]),
            "fit_points_per_label": round(float((fit > 0).sum()) / fit.shape[1], 3), "test_points": len(test.uids),
            "rows": rows, "differences": diffs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="hm")
    ap.add_argument("--shares", default="0.25,0.5,1")
    ap.add_argument("--peers", default="tfidf-plt,tfidf-plt-beam", help="stage 07's peers at each share (tuned as stage 07 does)")
    ap.add_argument("--run-prefix", default=None, help="run ids: <prefix>.share-<pct> (default: data-size-<preset>)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("-p", "--param", action="append", default=[], help="more -p overrides for every share's run")
    ap.add_argument("--existing", action="append", default=[], metavar="SHARE=RUN",
                    help="take a share's rows from a finished run of the preset instead (e.g. 1=hm-22: the full share's "
                         "Module I does not depend on the modality twins a preset's run also trained)")
    args = ap.parse_args(argv)
    prefix = args.run_prefix or f"data-size-{args.preset}"
    results = []
    existing = {float(k): v for k, v in (e.split("=", 1) for e in args.existing)}
    for share in [float(s) for s in args.shares.split(",")]:
        run_id = existing.get(share) or f"{prefix}.share-{round(100 * share)}"
        over = [f"02.fit_share={share}", "02.compare_modalities=", "06.timing_points=0", f"07.peers={args.peers}",
                *args.param]
        exists = (RUNS_DIR / run_id / "run.json").exists()
        done = exists and all(e["status"] == "ok" for e in json.loads((RUNS_DIR / run_id / "run.json").read_text())
                              ["notebooks"].values() if e)
        cmd = [sys.executable, "-m", "mufin_lib.run", *(["--resume", run_id] if exists else
                                                        ["--preset", args.preset, "--only", CHAIN, "--run-id", run_id,
                                                         "--reuse", *sum((["-p", o] for o in over), [])])]
        t0 = time.time()
        if not done:
            subprocess.run(cmd, cwd=ROOT, check=True)
        res = {"share": share, "wall_s": round(time.time() - t0, 1), **rows_of(RUNS_DIR / run_id, args.bootstrap, 0)}
        results.append(res)
        print(f"share {share:g}: {res['fit_points']} fit points, {res['fit_points_per_label']} per label, "
              f"P@1 " + ", ".join(f"{r['row']} {r['P@1']:.2f}" for r in res["rows"]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(OUT) as f:
        json.dump({"benchmark": "data_size", "preset": args.preset, "peers": args.peers,
                   "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count()},
                   "time": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                   "note": "test P@1 per share of the fit points; validation and test points the same at every share",
                   "results": results}, f, indent=2)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
