"""Compare every value two runs wrote (metrics.json, alpha.json, history.json of every stage), timings aside.

    python tools/compare_runs.py runs/<a> runs/<b>

Prints each number that differs (with its path in the JSON) and a count; exit 1 when any differs. Used to check
that a refactor changes no result (same seed, same preset).
"""
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


def main(a: str, b: str) -> int:
    a, b = Path(a), Path(b)
    files = sorted({p.relative_to(a) for n in FILES for p in a.glob(f"*/{n}")})
    diffs, n = [], 0
    for rel in files:
        if not (b / rel).exists():
            diffs.append(f"{rel}: missing in {b}")
            continue
        la = dict(leaves(json.loads((a / rel).read_text())))
        lb = dict(leaves(json.loads((b / rel).read_text())))
        for key in sorted(set(la) | set(lb)):
            n += 1
            x, y = la.get(key), lb.get(key)
            if x != y and not (x != x and y != y):  # NaN equals NaN here
                diffs.append(f"{rel}{key}: {la.get(key)} -> {lb.get(key)}")
    print("\n".join(diffs[:200]))
    print(f"{len(files)} files, {n} values compared (timings and file places aside), {len(diffs)} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
