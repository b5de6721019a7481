"""Paired-bootstrap intervals of MUFIN's rows against each other on a finished run, at any P@k / PSP@k (stage 07
gives them against the peers at P@1 and PSP@5 only): e.g. whether MUFIN beats its Module I at P@5.

    python tools/mufin_intervals.py runs/<id> [--metrics P@1,P@5,PSP@5] [--against "Module I (text+image)"]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mufin_lib.artifacts import open_run  # noqa: E402
from mufin_lib.metrics import paired_bootstrap, point_parts  # noqa: E402
from mufin_lib.stages.peers import mufin_rows  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--metrics", default="P@1,P@5,PSP@5")
    ap.add_argument("--against", default="", help="the reference row (default: the run's first Module I row)")
    a = ap.parse_args(argv)
    run = open_run(a.run_dir)
    test, inv_p = run.split("test"), run.inv_propensity()
    rows = {r.method: r for r in mufin_rows(run, 5)}
    ref = a.against or next(m for m in rows if m.startswith("Module I"))
    main_row = run.metrics("evaluate").get("mufin") or next(m for m in rows if m.startswith("MUFIN ("))
    out = {"run": run.dir.name, "data": run.data_title, "reference": ref, "rows": {}}
    for name, r in rows.items():
        if name == ref:
            continue
        out["rows"][name] = {m: paired_bootstrap(point_parts(r.scores, test.Y, inv_p, test.filter, m),
                                                 point_parts(rows[ref].scores, test.Y, inv_p, test.filter, m))
                             for m in a.metrics.split(",")}
    out["main"] = main_row
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
