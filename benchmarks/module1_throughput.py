"""Benchmark: Module I training throughput (points/s) on this machine, for the frozen-encoder path (the
CPU default), beside fine-tuned encoders (the paper's setting; measured on a smaller catalogue because it
is two orders of magnitude slower on a CPU). Writes runs/benchmarks/module1_throughput.json.

    python benchmarks/module1_throughput.py [--size smoke] [--epochs 2] [--ft-size 400]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mufin_lib.data.prepare import get_synthetic  # noqa: E402
from mufin_lib.data.xc import read_xc  # noqa: E402
from mufin_lib.encoders import embed_dataset  # noqa: E402
from mufin_lib.data.xc import carve_validation  # noqa: E402
from mufin_lib.module1 import train  # noqa: E402
from mufin_lib.stages.module1 import Module1Params  # noqa: E402
from mufin_lib.paths import RUNS_DIR, atomic_write  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="smoke")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--ft-size", type=int, default=400, help="products of the catalogue for the fine-tuned run")
    ap.add_argument("--ft-batch-size", type=int, default=32)
    args = ap.parse_args()
    root = get_synthetic(args.size)
    ds = read_xc(root)
    emb = embed_dataset(root)
    results = []
    for mod in ("text+image", "text"):
        p = Module1Params(epochs=args.epochs, batch_size=args.batch_size, modalities=mod, cluster_after=1)
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            _, st = train(ds, emb, Path(d), p, resume=False, progress=False)
            total = time.perf_counter() - t
        n_fit = len(carve_validation(ds.Y["train"].shape[0], p.val_fraction, p.seed, p.val_max)[0])
        train_s = sum(h["seconds"] for h in st.history)
        results.append({"encoders": "frozen", "modalities": mod, "points": n_fit, "epochs": args.epochs,
                        "train_seconds": round(train_s, 2), "points_per_s": round(n_fit * args.epochs / train_s, 1),
                        "total_seconds_with_validation": round(total, 2)})
        print(results[-1])
    ft_root = get_synthetic(args.ft_size)
    ft_ds = read_xc(ft_root)
    p = Module1Params(epochs=1, batch_size=args.ft_batch_size, freeze_encoders=False, cluster_after=5, val_fraction=0.0)
    with tempfile.TemporaryDirectory() as d:
        _, st = train(ft_ds, None, Path(d), p, resume=False, progress=True)
    n_fit = ft_ds.Y["train"].shape[0]
    train_s = st.history[0]["seconds"]
    results.append({"encoders": "fine-tuned", "modalities": "text+image", "points": n_fit, "epochs": 1,
                    "batch_size": args.ft_batch_size, "train_seconds": round(train_s, 2),
                    "points_per_s": round(n_fit / train_s, 2), "data": f"synthetic-{args.ft_size}"})
    print(results[-1])
    out = RUNS_DIR / "benchmarks" / "module1_throughput.json"
    with atomic_write(out) as f:
        json.dump({"benchmark": "module1_throughput", "data": f"synthetic-{args.size} (SYNTHETIC)",
                   "machine": platform.platform(), "torch_threads": torch.get_num_threads(),
                   "cuda": torch.cuda.is_available(), "results": results}, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
