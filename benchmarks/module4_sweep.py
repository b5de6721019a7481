"""Module III-IV options side by side on one run (after its stages 01-03): each configuration makes its own
shortlists (stage 04), trains Module IV (05) and tunes alpha (06) in a copy of the run, through the notebooks'
library calls. The configuration to keep is the one with the best validation score (the alpha half of validation);
test numbers are reported for every configuration, never used to choose.

    python benchmarks/module4_sweep.py --run-dir runs/<id> --out sweep.json [--configs NAME,...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mufin_lib.artifacts import open_run  # noqa: E402
from mufin_lib.stages.torchrun import stage_parameters  # noqa: E402
from mufin_lib.paths import atomic_write  # noqa: E402

AUTHORS = {"frozen_epochs": 10, "lr": 5e-4, "classifier_lr": 5e-3, "mix": "per_label", "negative_sampling": "rank",
           "max_csim": 0.9}
SAMPLED = {"negative_sampling": "rank", "max_csim": 0.9}
# name -> (stage 04 changes, stage 05 changes, stage 06 changes)
CONFIGS = {
    "as the paper (index, lr 5e-5, cosine loss)": ({}, {}, {}),
    "classifier lr 5e-3 (authors' code)": ({}, {"classifier_lr": 5e-3}, {}),
    "softmax loss": ({}, {"loss": "softmax"}, {}),
    "alpha per frequency bin": ({}, {}, {"frequency_bins": "2,5,20"}),
    "votes in shortlist": ({"augment": "votes"}, {}, {}),
    "votes + alpha per bin": ({"augment": "votes"}, {}, {"frequency_bins": "2,5,20"}),
    "votes + softmax loss + alpha per bin": ({"augment": "votes"}, {"loss": "softmax"}, {"frequency_bins": "2,5,20"}),
    "votes + classifier lr 5e-3 + softmax + alpha per bin": ({"augment": "votes"}, {"classifier_lr": 5e-3, "loss": "softmax"},
                                                             {"frequency_bins": "2,5,20"}),
    "centroids in shortlist": ({"augment": "centroid"}, {}, {}),
    # the authors' ranker: two stages (frozen features first), A_C at 5e-4, classifiers at 5e-3 with one mix per label,
    # negatives sampled by rank without near-duplicates of a positive
    "votes + authors' ranker": ({"augment": "votes"}, AUTHORS, {}),
    "votes + authors' ranker + alpha per bin": ({"augment": "votes"}, AUTHORS, {"frequency_bins": "2,5,20"}),
    "votes + frozen stage only (authors' lrs)": ({"augment": "votes"}, {**AUTHORS, "train_encoder": False}, {"frequency_bins": "2,5,20"}),
    "votes + classifier lr 5e-3 + per-label mix": ({"augment": "votes"}, {"classifier_lr": 5e-3, "mix": "per_label"},
                                                   {"frequency_bins": "2,5,20"}),
    "votes + sampled negatives, max_csim 0.9": ({"augment": "votes"}, SAMPLED, {}),
    "votes + sampled negatives, max_csim 0.9 + alpha per bin": ({"augment": "votes"}, SAMPLED, {"frequency_bins": "2,5,20"}),
    "votes + sampled negatives": ({"augment": "votes"}, {"negative_sampling": "rank"}, {}),
    "votes + max_csim 0.9": ({"augment": "votes"}, {"max_csim": 0.9}, {}),
    "sampled negatives, max_csim 0.9": ({}, SAMPLED, {}),
    "centroids + sampled negatives, max_csim 0.9": ({"augment": "centroid"}, SAMPLED, {}),
    "votes + sampled negatives, max_csim 0.9 + softmax": ({"augment": "votes"}, {**SAMPLED, "loss": "softmax"}, {}),
    "votes + sampled negatives, max_csim 0.9 + frozen stage 5": ({"augment": "votes"}, {**SAMPLED, "frozen_epochs": 5}, {}),
    "votes + sampled negatives, max_csim 0.9 + per-label mix": ({"augment": "votes"}, {**SAMPLED, "mix": "per_label"}, {}),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--configs", default="", help="names separated by | (default: all)")
    a = ap.parse_args(argv)
    from mufin_lib.stages import evaluate, module3, module4

    base = (ROOT / a.run_dir).resolve()
    names = [n for n in CONFIGS if not a.configs or n in a.configs.split("|")]
    out = {"run": base.name, "configs": []}
    for i, name in enumerate(names):
        d = base.with_name(f"{base.name}-sweep{i}")
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        for part in ("dataset", "module1", "module2", "run.json"):
            src = base / part
            (shutil.copytree if src.is_dir() else shutil.copy)(src, d / part)
        run = open_run(d)
        c4, c5, c6 = CONFIGS[name]
        t = time.perf_counter()
        p4 = replace(stage_parameters(base, "04", [], module3.Module3Params), **c4)
        sl = module3.stage(run, p4).table
        p5 = replace(stage_parameters(base, "05", [], module4.Module4Params), **c5)
        hist = module4.stage(run, p5, progress=False).history
        p6 = replace(stage_parameters(base, "06", [], evaluate.EvaluateParams), timing_points=0, **c6)
        r6 = evaluate.stage(run, p6)
        best = next(r for r in r6.curve if r["alpha"] == r6.alpha)
        test = r6.table.set_index("method")
        main_row = r6.summary["mufin"]
        rec = {"config": name, "seconds": round(time.perf_counter() - t, 1),
               "test_R@100": float(sl[sl.split == "test"].iloc[0]["R@100"]),
               "val_alpha_half_P@1_at_global_alpha": best["P@1"], "alpha": r6.alpha,
               "alpha_by_frequency": r6.summary["alpha_by_frequency"], "module4_epochs": len(hist),
               "kept_epoch": next((h["epoch"] for h in hist if h.get("selected")), len(hist)),
               "test": {m: {k: float(test.loc[m, k]) for k in ("P@1", "P@5", "PSP@5")} for m in test.index},
               "mufin": main_row}
        out["configs"].append(rec)
        print(json.dumps({k: rec[k] for k in ("config", "seconds", "test_R@100", "alpha", "kept_epoch")}),
              {m: v["P@1"] for m, v in rec["test"].items()}, flush=True)
        with atomic_write(Path(a.out)) as f:  # after each configuration: a cut-off sweep keeps what it finished
            json.dump(out, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
