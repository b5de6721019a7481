"""What the torchrun entries of stages 02 and 05 share: the parameters a notebook has in a run, and the command line
`--run-dir R [--out DIR] [-p [NN.]key=value ...]`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..artifacts import open_run
from ..config import (RUNNER_PARAMETERS, ConfigError, apply_overrides, check_parameters, discover_notebooks,
                      params_from, resolve_parameters, select_notebooks)
from ..training import dist_info, finish_distributed
from . import params_class


def stage_parameters(run_dir: str | Path, number: str, overrides: list[str], cls=None):
    """What notebook `number` has (or would have) in a run: its recorded parameters in run.json, else its
    defaults under the run's preset; then `-p` overrides through the runner's parser. With `cls`, the Params
    dataclass built from them (the torchrun entries: exactly what the notebook would train with)."""
    specs = discover_notebooks()
    spec = select_notebooks(specs, number)
    f = Path(run_dir) / "run.json"
    record = json.loads(f.read_text()) if f.exists() else {}
    recorded = (record.get("notebooks") or {}).get(spec[0].name)
    if recorded is not None:
        final = {spec[0].name: dict(recorded["parameters"])}
    else:
        final = resolve_parameters(specs, spec, record.get("preset"), [])
        final[spec[0].name] = {**{k: v for k, v in spec[0].parameters.items() if k not in RUNNER_PARAMETERS},
                               **final[spec[0].name]}
    final = apply_overrides(specs, spec, final, overrides)
    check_parameters(final, params_class)
    final = final[spec[0].name]
    return final if cls is None else params_from(cls, final)


def entry(prog: str, number: str, params_cls, default_out: str, argv=None):
    """Parse a torchrun entry's command line: (open run, the Params notebook `number` has in that run with -p applied,
    the --out folder or None)."""
    ap = argparse.ArgumentParser(prog=prog, description=f"notebook {number}'s stage under torchrun, with the run's "
                                 "parameters for it (run.json) and -p overrides through the runner's parser")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", help=f"output folder (default: RUN_DIR/{default_out})")
    ap.add_argument("-p", action="append", default=[], metavar="[NN.]KEY=VALUE")
    args = ap.parse_args(argv)
    run = open_run(args.run_dir)
    try:
        params = stage_parameters(run.dir, number, args.p, params_cls)
    except ConfigError as e:
        raise SystemExit(f"{prog}: error: {e}") from None
    return run, params, (Path(args.out) if args.out else None)


def report_rank0(**fields) -> None:
    """The entry's one-line JSON summary (rank 0 only), then the process group is closed."""
    rank, world = dist_info()
    if rank == 0:
        print(json.dumps({"world_size": world, **fields}))
    finish_distributed()
