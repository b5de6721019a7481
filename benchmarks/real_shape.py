"""Benchmark: the real data's shape on this machine. Stages 01-07 through the runner on a PLANTED SYNTHETIC dataset
of MM-AmazonTitles-300K's shape (303,296 labels, 586,781 train and 260,536 test points, about 8 labels per point),
from precomputed title embeddings (planted vectors stored where stage 01 would cache the encoder's outputs, so no
encoder runs): each stage's seconds and peak memory (the runner's `duration_s` and `peak_rss_GB` in run.json).
Writes runs/benchmarks/real_shape.json in stage 11's format.

    python benchmarks/real_shape.py [--labels 303296 --train 586781 --test 260536] [--run-id shape-303k]
                                    [-p NN.key=value ...]   # more overrides, e.g. a shorter training

How the data is planted: labels fall in clusters of about 50 (random unit centres in D = 384); a label's vector is its
centre plus noise; a point picks a cluster by size and 1 + Poisson(7) of its labels, skewed towards the cluster's first
(popular) labels; its embedding is the mean of its labels' vectors plus noise. Titles are words of the cluster's own
vocabulary and of the common one, so TF-IDF peers have something to learn. Its P@k say nothing about real data: the
benchmark is for time and memory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from mufin_lib.data.xc import XCDataset, write_xc  # noqa: E402
from mufin_lib.encoders import store_precomputed  # noqa: E402
from mufin_lib.paths import RUNS_DIR, atomic_write  # noqa: E402
from mufin_lib.progress import tqdm  # noqa: E402

OUT = RUNS_DIR / "benchmarks" / "real_shape.json"
ENCODER = "planted-384"  # a name no encoder loads: a stage that tried to encode a title would fail, not mix models
STAGES = "01,02,03,04,05,06,07"
# the chain as the real presets run it (votes in the shortlist and the score), text only; training short enough for
# 2 cores: 3 epochs of Module I (one on clustered batches), one epoch of Module IV on frozen features, one fine-tuned
OVERRIDES = ["image_encoder=", f"text_encoder={ENCODER}", "01.source=xc-dir", "01.frozen_check=false",
             "02.epochs=3", "02.cluster_after=2", "02.batch_size=1024", "02.modalities=text",
             "04.augment=votes", "05.epochs=1", "05.frozen_epochs=1", "05.negative_sampling=rank", "05.max_csim=0.9",
             "06.timing_points=0", "07.peers=popularity,tfidf-plt,label-knn,votes"]


def _unit(X):
    return (X / (np.linalg.norm(X, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def plant(L: int, n_train: int, n_test: int, seed: int, D: int = 384, per_cluster: int = 50):
    """(XCDataset without a root, embeddings in the cache's row order: labels, train, test)."""
    rng = np.random.default_rng(seed)
    C = max(1, L // per_cluster)
    centres = _unit(rng.standard_normal((C, D)))
    cluster = np.sort(rng.integers(0, C, L))
    start = np.searchsorted(cluster, np.arange(C + 1))
    size = np.diff(start)
    lab = np.empty((L, D), np.float32)
    for s in range(0, L, 100_000):
        e = min(L, s + 100_000)
        lab[s:e] = _unit(centres[cluster[s:e]] + 0.7 * _unit(rng.standard_normal((e - s, D))))
    vocab, common = 20, 2000  # words per cluster, common words

    def title(c, n_words):
        own = rng.integers(0, vocab, n_words)
        return " ".join([f"c{c}w{w}" for w in own] + [f"w{w}" for w in rng.integers(0, common, 3)])

    def points(n):
        c = cluster[rng.integers(0, L, n)]  # a cluster by its size
        k = np.minimum(1 + rng.poisson(7, n), size[c])
        rows = np.repeat(np.arange(n), k)
        off = np.floor(size[c][rows] * rng.random(len(rows)) ** 2).astype(np.int64)  # skewed to popular labels
        Y = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, start[c][rows] + off)), shape=(n, L))
        Y.data[:] = 1.0  # repeated draws count once
        X = np.empty((n, D), np.float32)
        for s in range(0, n, 100_000):
            e = min(n, s + 100_000)
            m = Y[s:e] @ lab
            X[s:e] = _unit(_unit(m) + 0.8 * _unit(rng.standard_normal((e - s, D))))
        return Y, X, [title(ci, 4) for ci in c]

    Ytr, Xtr, ttr = points(n_train)
    Yte, Xte, tte = points(n_test)
    uids = {"label": [f"L{i}" for i in range(L)], "train": [f"P{i}" for i in range(n_train)],
            "test": [f"T{i}" for i in range(n_test)]}
    titles = {"label": [title(c, 4) for c in cluster], "train": ttr, "test": tte}
    ds = XCDataset(Path("."), uids, titles, {"train": Ytr, "test": Yte})
    return ds, np.vstack([_unit(lab + 0.3 * _unit(rng.standard_normal((L, D)))), Xtr, Xte])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=int, default=303_296)
    ap.add_argument("--train", type=int, default=586_781)
    ap.add_argument("--test", type=int, default=260_536)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-id", default="shape-303k")
    ap.add_argument("-p", action="append", default=[], metavar="[NN.]KEY=VALUE", help="more overrides")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--report-only", action="store_true",
                    help="write the JSON from the run as it stands (the stages it finished), running nothing")
    args = ap.parse_args()
    from mufin_lib.run import execute, start_run

    if args.report_only:
        path = RUNS_DIR / args.run_id
        record = json.loads((path / "run.json").read_text())
        report(args, record, path, record.get("overrides", []), None)
        return

    root = RUNS_DIR / f"{args.run_id}-data"
    t0 = time.time()
    if not (root / "synthetic.json").exists():
        with tqdm(total=2, desc="plant the data") as bar:
            ds, emb = plant(args.labels, args.train, args.test, args.seed)
            bar.update()
            write_xc(ds, root)
            store_precomputed(root, emb, source=f"benchmarks/real_shape.py planted vectors, seed {args.seed}",
                              text_encoder=ENCODER)
            bar.update()
        with atomic_write(root / "synthetic.json") as f:  # written last: the data are complete
            json.dump({"generator": "benchmarks/real_shape.py (planted vectors)", "seed": args.seed, "L": args.labels,
                       "N_train": args.train, "N_test": args.test}, f, indent=2)
    plant_s = round(time.time() - t0, 1)
    overrides = OVERRIDES + [f"01.input_path={root}", f"01.name=planted {args.labels // 1000}K shape (SYNTHETIC)"] + args.p
    run_dir = RUNS_DIR / args.run_id
    if (run_dir / "run.json").exists():
        from mufin_lib.run import resume_run
        record, path = resume_run(args.run_id)
    else:
        record, path = start_run(None, STAGES, overrides, args.run_id)
    record = execute(record, path)
    report(args, record, path, overrides, plant_s)


def report(args, record: dict, path: Path, overrides: list[str], plant_s) -> None:
    """runs/benchmarks/real_shape.json (stage 11's format): each notebook's seconds, peak memory and status."""
    results = [{"stage": n, "status": e.get("status"), "seconds": e.get("duration_s") if e.get("status") == "ok" else None,
                "peak_rss_GB": e.get("peak_rss_GB") if e.get("status") == "ok" else None,
                "L": args.labels, "N_train": args.train, "N_test": args.test}
               for n, e in record["notebooks"].items()]
    out = {"benchmark": "real_shape", "synthetic": True, "run": str(path), "git": record.get("git"),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "device": record.get("device")},
           "plant_s": plant_s, "overrides": overrides, "note": record.get("note"), "results": results,
           "target_peak_GB": 16}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(args.out)) as f:
        json.dump(out, f, indent=2)
    for r in results:
        print(f"{r['stage']:24s} {r['status']:>8} {r['seconds']!s:>9} s  peak {r['peak_rss_GB']} GB")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
