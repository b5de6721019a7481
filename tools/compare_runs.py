"""Compare every value two runs wrote (metrics.json, alpha.json, history.json of every stage), timings aside.

    python tools/compare_runs.py runs/<a> runs/<b> [--rename OLD=NEW ...]

Prints each number that differs (with its path in the JSON) and a count; exit 1 when any differs. Used to check
that a refactor changes no result (same seed, same preset). `--rename` states a deliberate rename of a row or
key: OLD in run a's strings and keys reads as NEW (the count of values it touched is printed).
"""
import argparse
import json
import sys
from pathlib import Path

TIMING = ("seconds", "ms", "time", "threads", "device")
PLACES = ("path", "root", "input_path", "output", "bench_dir", "source")  # where a run lives, not what it found
FILES = ("metrics.json", "alpha.json", "history.json", "recall.json")


def is_timing(key: str) -> bool:
    """Keys that hold how long something took, or where it ran: these differ from run to run by nature."""
    k = key.lower()
    return (k in TIMING or k.startswith(("timing", "ms_", "s_per")) or "_per_s" in k or "ms_per" in k
            or k.endswith(("_s", "_ms", "seconds", "time")))


def leaves(obj, path=""):
    """(path, value) for every number, string and flag of a JSON value; timings and file places skipped."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not is_timing(str(k)) and str(k) not in PLACES:
                yield from leaves(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        yield path, obj


def renamed(obj, renames, touched):
    """obj with every string and key of it renamed (OLD -> NEW); touched counts the changes."""
    def name(x):
        for old, new in renames:
            if old in x:
                touched[0] += 1
                x = x.replace(old, new)
        return x
    if isinstance(obj, dict):
        return {name(str(k)): renamed(v, renames, touched) for k, v in obj.items()}
    if isinstance(obj, list):
        return [renamed(v, renames, touched) for v in obj]
    return name(obj) if isinstance(obj, str) else obj


def main(a: str, b: str, renames=()) -> int:
    a, b = Path(a), Path(b)
    touched = [0]
    files = sorted({p.relative_to(a) for n in FILES for p in a.glob(f"*/{n}")})
    diffs, n = [], 0
    for rel in files:
        if not (b / rel).exists():
            diffs.append(f"{rel}: missing in {b}")
            continue
        la = dict(leaves(renamed(json.loads((a / rel).read_text()), renames, touched)))
        lb = dict(leaves(json.loads((b / rel).read_text())))
        for key in sorted(set(la) | set(lb)):
            n += 1
            x, y = la.get(key), lb.get(key)
            if x != y and not (x != x and y != y):  # NaN equals NaN here
                diffs.append(f"{rel}{key}: {la.get(key)} -> {lb.get(key)}")
    print("\n".join(diffs[:200]))
    if renames:
        print(f"renamed in {a.name}: {', '.join(f'{o!r} -> {w!r}' for o, w in renames)} ({touched[0]} strings or keys)")
    print(f"{len(files)} files, {n} values compared (timings and file places aside), {len(diffs)} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="every value two runs wrote, timings aside")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rename", action="append", default=[], metavar="OLD=NEW")
    args = ap.parse_args()
    sys.exit(main(args.a, args.b, [tuple(r.split("=", 1)) for r in args.rename]))
