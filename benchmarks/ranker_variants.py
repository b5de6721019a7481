"""Investigation (not a speed benchmark): does some variant of Module IV beat Module I on a finished run?

Retrains Module IV on the run's Module I, bags and shortlists with each named variant (Module4Params
overrides), chooses alpha on the filtered validation split as notebook 06 does, and reports test metrics of
Module IV alone, alpha = 1 and the fused score. The run's own module4/ is left untouched: each variant
trains under runs/benchmarks/ranker_variants/<run>/<variant>/ (and resumes from its checkpoints there).
Writes runs/benchmarks/ranker_variants.json, one entry per variant, merged with earlier entries.

    python benchmarks/ranker_variants.py --run runs/default-6 [--variants paper_loss,frozen_layers,low_lr,no_AC]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mufin_lib.artifacts import open_run  # noqa: E402
from mufin_lib.fusion import evaluate_fused, tune_alpha  # noqa: E402
from mufin_lib.paths import RUNS_DIR, atomic_write  # noqa: E402
from mufin_lib.stages.evaluate import score_split  # noqa: E402
from mufin_lib.stages.module4 import Module4Params, train  # noqa: E402

# What each variant changes from the default preset's Module IV (epochs 8, patience 2, epoch kept on validation)
BASE = {"epochs": 8, "patience": 2}
VARIANTS = {
    "paper_loss": {},  # the default preset itself
    "frozen_layers": {"train_encoder": False},  # Module I's layers fixed; only A_C and the classifiers learn
    "low_lr": {"lr": 1e-5, "encoder_lr": 1e-5},  # a tenth of the default learning rates
    "no_AC": {"combiner": "none"},  # Table 4's "no A_C" ablation
}
OUT = RUNS_DIR / "benchmarks" / "ranker_variants.json"
METRICS = ("P@1", "P@3", "P@5", "PSP@5")


def run_variant(run, name: str, overrides: dict) -> dict:
    """Train the variant under runs/benchmarks/, then score it as stage 06 does (alpha tuned on validation)."""
    params = Module4Params(**{**BASE, **overrides})
    t = time.perf_counter()
    ranker, hist = train(run, params, out=RUNS_DIR / "benchmarks" / "ranker_variants" / run.dir.name / name)
    train_s = time.perf_counter() - t
    inv_p = run.inv_propensity()
    scored = {split: score_split(run, split, ranker) for split in ("val", "test")}
    val, test_split = run.split("val"), run.split("test")
    alpha, curve = tune_alpha(*scored["val"], val.Y, val.filter, inv_p)
    test = {}
    for label, a in (("Module IV alone", 0.0), ("MUFIN-(alpha=1)", 1.0), ("MUFIN (tuned alpha)", alpha)):
        m = evaluate_fused(*scored["test"], a, test_split, inv_p)
        test[label] = {k: round(float(m[k]), 4) for k in METRICS}
    return {"params": {**BASE, **overrides}, "alpha": alpha, "train_seconds": round(train_s, 1),
            "history": [{k: h.get(k) for k in ("epoch", "loss", "val_P@1", "val_fused_P@1", "selected")} for h in hist],
            "val_alpha_curve_P@1": [(c["alpha"], round(c["P@1"], 2)) for c in curve], "test": test}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a finished run folder (stages 01-04 done)")
    ap.add_argument("--epochs", type=int, default=BASE["epochs"], help="epochs planned (patience may stop sooner)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    args = ap.parse_args(argv)
    run = open_run(args.run)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    for stage in ("dataset", "module1", "module3"):
        if not (run.dir / stage).is_dir():
            ap.error(f"{run.dir}: no {stage}/ folder; run notebooks 01-04 first")
    # same layout as the other benchmarks (report.read_benchmarks): rows merged with earlier runs' rows
    old = json.loads(OUT.read_text())["results"] if OUT.exists() else []
    for name in names:
        print(f"[{name}] {VARIANTS[name] or 'default preset'}", flush=True)
        r = {"run": run.dir.name, "data": run.data_title, "variant": name,
             **run_variant(run, name, {**VARIANTS[name], "epochs": args.epochs})}
        print(f"[{name}] alpha {r['alpha']}: " + "; ".join(f"{k} P@1 {v['P@1']:.2f} P@5 {v['P@5']:.2f}" for k, v in r["test"].items()), flush=True)
        old = [o for o in old if (o["run"], o["variant"]) != (run.dir.name, name)] + [r]
        with atomic_write(OUT) as f:  # after each variant: a killed run keeps the finished ones
            json.dump({"benchmark": "ranker_variants", "data": "per row",
                       "split": "test; alpha tuned on filtered validation", "results": old}, f, indent=2)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
