"""Stages 02-06 of a run whose stage 01 is done, through the library calls the notebooks make (no papermill), timed
per stage, on whatever device torch finds (CUDA when present): the GPU check of the kit, which needs no Jupyter.

    python benchmarks/gpu_chain.py --run-dir runs/<id> [--out result.json] [-p 02.epochs=...]

The run's stage 01 may come from another machine: dataset.json's root is re-based onto this project when it
points into another checkout. Writes one JSON: device, per-stage seconds, and the stages' headline metrics.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mufin_lib.artifacts import open_run  # noqa: E402
from mufin_lib.stages.torchrun import stage_parameters  # noqa: E402
from mufin_lib.paths import atomic_write  # noqa: E402


def rebase(run_dir: Path) -> None:
    """dataset.json written in another checkout: point its root at this run's own dataset folder."""
    f = run_dir / "dataset" / "dataset.json"
    info = json.loads(f.read_text())
    here = run_dir / "dataset" / "xc"
    if not Path(info["root"]).exists() and here.exists():
        info["root"] = str(here.resolve())
        with atomic_write(f) as out:
            json.dump(info, out, indent=2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", default="")
    ap.add_argument("-p", "--param", action="append", default=[])
    a = ap.parse_args(argv)
    from mufin_lib.stages import evaluate, module1, module2, module3, module4

    run_dir = (ROOT / a.run_dir).resolve()
    rebase(run_dir)
    run = open_run(run_dir)
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    out = {"device": dev, "torch": torch.__version__, "data": run.data_title, "seconds": {}, "metrics": {}}
    import faiss
    out["faiss_gpus"] = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0

    def stage(name, fn):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        res = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out["seconds"][name] = round(time.perf_counter() - t, 2)
        print(f"{name}: {out['seconds'][name]} s", flush=True)
        return res

    def params(number, cls):  # -p NN.key=... goes to notebook NN only
        mine = [x for x in a.param if x.startswith(f"{number}.") or "." not in x.split("=", 1)[0]]
        return stage_parameters(run_dir, number, mine, cls)

    p1 = params("02", module1.Module1Params)
    r1 = stage("02 Module I", lambda: module1.stage(run, p1, progress=False))
    out["module1_timing"] = r1.timing
    out["metrics"]["module1"] = r1.table[r1.table.split == "test"][["model", "P@1", "P@5"]].to_dict("records")
    stage("03 Module II index", lambda: module2.stage(run, params("03", module2.Module2Params)))
    # stage 04 with its own parameters (it once took stage 03's and lost the preset's shortlist options)
    stage("04 Module III shortlists", lambda: module3.stage(run, params("04", module3.Module3Params)))
    p5 = params("05", module4.Module4Params)
    hist = stage("05 Module IV", lambda: module4.stage(run, p5, progress=False)).history
    out["module4_epochs"] = len(hist)
    out["module4_s_per_epoch"] = round(sum(h.get("seconds", 0) for h in hist) / max(1, len(hist)), 2)
    p6 = params("06", evaluate.EvaluateParams)
    r6 = stage("06 evaluate", lambda: evaluate.stage(run, p6))
    out["metrics"]["evaluate"] = r6.table[["method", "P@1", "P@5", "PSP@5"]].to_dict("records")
    out["timing_ms_per_point"] = r6.timing
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if a.out:
        with atomic_write(Path(a.out)) as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
