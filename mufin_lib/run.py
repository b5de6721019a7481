"""The runner: executes the numbered notebooks headless with papermill, under one run directory.

    mufin run --preset smoke                 # every notebook, smoke size
    mufin run --preset default --only 01,03  # a subset
    mufin run -p seed=3 -p size=2000         # single overrides (validated, type-checked)
    mufin run --resume <run-id>              # continue from the first unfinished notebook
    mufin run --resume <run-id> --only 03,04 # (re)run or add notebooks in that run
    mufin run --preset hm --only 08          # Table 4: the chain 01-06, each ablation variant beside it, then 08
    mufin run --preset hm --reuse            # take every stage another run finished with the same key (reuse.py)
    mufin run --preset mango                 # outfit completion: the chain on the train outfits, then notebook 14

Everything a run produces lives in runs/<run-id>/: executed notebooks, each stage's outputs, and
run.json (provenance: git commit, preset, final parameters, package versions, device, timings, status).
Also `python -m mufin_lib.run ...` (same arguments).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import (ConfigError, apply_overrides, available_presets, check_parameters, discover_notebooks, load_preset,
                     resolve_parameters, select_notebooks)
from .stages import params_class
from .paths import FIGURES_DIR, PROJECT_ROOT, RUNS_DIR, atomic_path, atomic_write, process_alive
from . import reuse as stage_reuse
from . import variants as ablation

ABLATIONS = "08_ablations"  # the notebook that reads the ablation variants' runs, which the runner runs before it
OUTFITS = "14_outfits"  # outfit completion: runs where the preset (or --only) names it

KEY_PACKAGES = ("mufin-kit", "torch", "torchvision", "timm", "sentence-transformers", "transformers", "faiss-cpu",
                "faiss-gpu", "numpy", "scipy", "pandas", "scikit-learn", "papermill", "napkinxc", "pillow")


class NotebookFailed(RuntimeError):
    pass


def git_commit() -> dict[str, Any]:
    def git(*args):
        r = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str]:
    out = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def cpu_model() -> str:
    """The CPU's model name: float results of CPU training can differ in the last digits between CPU models."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "cpu": cpu_model()}
    try:
        import torch
        info["cuda"] = torch.cuda.is_available()
        info["torch_threads"] = torch.get_num_threads()
        if info["cuda"]:
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as e:  # provenance must not stop a run
        info["torch_error"] = repr(e)
    return info


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_run_json(run_path: Path, record: dict) -> None:
    with atomic_write(run_path / "run.json") as f:
        json.dump(record, f, indent=2)


def new_run_id(preset: str | None) -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{preset or 'custom'}"


RUN_ID_RULE = "one name of letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters"


def check_run_id(run_id: str) -> str:
    """A run id names one folder under runs/, never a path: `..`, `.`, `a/b` or `/tmp/x` would write elsewhere."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", run_id or "") or ".." in run_id:
        raise ConfigError(f"run id {run_id!r}: expected {RUN_ID_RULE}")
    return run_id


class RunLock:
    """runs/<id>/run.lock holding the pid of the process that runs the run: a second `mufin run` of the same id is
    refused while the first lives; a lock left by a process that is gone (kill -9) is taken over."""

    def __init__(self, run_path: Path):
        self.path = Path(run_path) / "run.lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.path.read_text().strip() or "?"
                if holder.isdigit() and process_alive(holder):
                    raise ConfigError(f"run {self.path.parent.name} is being run by process {holder} ({self.path}); "
                                      "wait for it to finish (or stop it), then --resume") from None
                self.path.unlink(missing_ok=True)  # its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise ConfigError(f"{self.path}: could not take the run's lock")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
        try:  # a start refused before run.json was written leaves no empty folder behind
            self.path.parent.rmdir()
        except OSError:
            pass
        return False


PROGRESS_MARKS = ("it/s]", "s/it]", "img/s]", "%|", " file/s]", " product/s]")


def _progress_text(output) -> bool:
    """A stderr stream of progress bars: their text, or the blank line a finished bar leaves to clear itself."""
    if output.get("output_type") != "stream" or output.get("name") != "stderr":
        return False
    text = output.get("text", "")
    return not text.replace("\r", "").strip() or any(m in text for m in PROGRESS_MARKS)


def tidy_executed(path: Path) -> None:
    """An executed notebook as a finished report: the progress bars' text (stderr streams of tqdm, shown live on
    the console) left out of the saved outputs, and the file read-only, so that opening it in JupyterLab never
    rewrites a run's record (Lab does not autosave a file it cannot write)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _progress_text(o)]
    nbformat.write(nb, path)
    os.chmod(path, 0o444)


def _declared(overrides: list[str] | None, notebooks) -> list[str]:
    """The overrides (KEY=value or NN.KEY=value) that name a parameter one of `notebooks` declares."""
    declared = {k for s in notebooks for k in s.parameters} | {f"{s.number}.{k}" for s in notebooks for k in s.parameters}
    return [o for o in overrides or [] if o.split("=", 1)[0].strip() in declared]


def _check_variants(notebooks: dict) -> None:
    """Notebook 08's `variants` names known variants: refused before anything runs, not after the chain."""
    entry = notebooks.get(ABLATIONS)
    if entry:
        try:
            ablation.selected(entry["parameters"].get("variants", ""))
        except ValueError as e:
            raise ConfigError(f"notebook {ABLATIONS}: {e}") from None


def _reused(record: dict, run_path: Path, name: str, key: str, log) -> bool:
    """Take notebook `name` from another run that finished it with the same key (reuse.py); False when none has."""
    found = stage_reuse.find_done(RUNS_DIR, key, name, run_path)
    if found is None:
        return False
    source, done = found
    t0 = time.time()
    files = stage_reuse.take(source, run_path, name)
    first = done.get("reused_from") or {}  # a stage that run took from a third: what it cost where it ran
    cost = first.get("duration_s", done.get("duration_s"))
    ran_in = first.get("ran_in") or first.get("run") or source.name
    record["notebooks"][name].update(
        status="ok", start=now(), end=now(), duration_s=round(time.time() - t0, 2), error=None,
        output=f"notebooks/{name}.ipynb",
        reused_from={"run": source.name, "ran_in": ran_in, "duration_s": cost, "files": len(files)})
    write_run_json(run_path, record)
    log(f"    reused from run {source.name} (same parameters, inputs and code; it took {cost} s to run)")
    return True


class KernelPeak:
    """The largest peak resident memory (VmHWM) of any process below this one while a notebook runs (its kernel,
    and what the kernel starts), read from /proc each `interval` seconds and once at the end: the peak a stage needs
    of this machine. None where /proc has no such fields (not Linux)."""

    def __init__(self, interval: float = 1.0):
        self.interval, self.kb, self._stop = interval, None, None

    @staticmethod
    def _children() -> dict[int, list[int]]:
        kids: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                kids.setdefault(ppid, []).append(int(d.name))
        return kids

    def sample(self) -> None:
        kids, todo = self._children(), [os.getpid()]
        while todo:
            for pid in kids.get(todo.pop(), []):
                todo.append(pid)
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.kb = max(self.kb or 0, int(line.split()[1]))
                except (OSError, ValueError):
                    pass

    def __enter__(self):
        import threading
        if not Path("/proc/self/status").exists():
            return self
        self._stop = threading.Event()

        def loop():
            while not self._stop.wait(self.interval):
                self.sample()
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
        return False

    @property
    def gb(self) -> float | None:
        return None if self.kb is None else round(self.kb / 2 ** 20, 2)


def run_variants(record: dict, run_path: Path, log=print) -> None:
    """The ablation variants notebook 08 asks for (its `variants`), each a run beside this one
    (variants.variant_run_id) of the chain 01-06 with the variant's overrides on this run's preset and overrides; every
    stage whose key matches a finished one (this run's, first of all) is reused. A variant run that exists is resumed."""
    _check_variants(record["notebooks"])
    chosen = ablation.selected(record["notebooks"][ABLATIONS]["parameters"].get("variants", ""))
    own = _declared(record.get("overrides"), [s for s in discover_notebooks() if s.number in ablation.CHAIN])
    for i, v in enumerate(chosen, 1):
        vid = check_run_id(ablation.variant_run_id(record["run_id"], v.name))
        with RunLock(RUNS_DIR / vid):
            if (RUNS_DIR / vid / "run.json").exists():
                rec, path = resume_run(vid)
            else:
                rec, path = start_run(record.get("preset"), ",".join(ablation.CHAIN), own + ablation.overrides_of(v), vid)
            rec.update(reuse=True, variant={"of": record["run_id"], "name": v.name, "row": v.row})
            log(f"ablation variant {i}/{len(chosen)}: {v.name} -> {path}")
            execute(rec, path, log=lambda m: log("    " + m))


def execute(record: dict, run_path: Path, log=print) -> dict:
    """Run every notebook of `record` whose status is not 'ok', in order; stop at the first failure. With
    record["reuse"] (--reuse; every run with notebook 08), a notebook another run finished with the same key is taken
    from it (reuse.py); before notebook 08, the ablation variants run (run_variants)."""
    import papermill as pm

    os.environ["MUFIN_PROGRESS"] = "text"  # the kernels inherit it: text progress bars, shown on this console
    specs = {s.name: s for s in discover_notebooks()}
    todo = [n for n in record["notebooks"] if record["notebooks"][n]["status"] != "ok"]
    total = len(record["notebooks"])
    out_dir = run_path / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = stage_reuse.notebook_keys(record["notebooks"])
    t_run = time.time()
    for name in todo:
        entry = record["notebooks"][name]
        if name not in specs:
            raise ConfigError(f"run {record['run_id']}: notebook {name} no longer exists in notebooks/")
        pos = list(record["notebooks"]).index(name) + 1
        log(f"[{pos}/{total}] {name} ... (run elapsed {time.time() - t_run:.0f} s)")
        entry["key"] = keys[name]
        entry.pop("reused_from", None)
        if name == ABLATIONS:
            run_variants(record, run_path, log)
        elif record.get("reuse") and _reused(record, run_path, name, keys[name], log):
            continue
        entry.update(status="running", start=now(), end=None, duration_s=None, error=None)
        write_run_json(run_path, record)
        params = dict(entry["parameters"], run_dir=str(run_path))
        final = out_dir / f"{name}.ipynb"
        partial = out_dir / f"{name}.partial.ipynb"  # papermill saves as it goes: never under the final name
        t0 = time.time()
        peak = KernelPeak()
        try:
            # the console shows the notebook's own progress (its tqdm bars and stderr) as it runs, cell by cell
            # on a terminal; the kernel's own log is silenced (its "TCP without encryption" warning is for
            # remote kernels, and ours listens on 127.0.0.1 only)
            with peak:
                pm.execute_notebook(str(specs[name].path), str(partial), parameters=params, kernel_name="python3",
                                    cwd=str(specs[name].path.parent), progress_bar=sys.stderr.isatty(),
                                    log_output=False, stderr_file=sys.stderr,
                                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
        except pm.PapermillExecutionError as e:
            entry.update(status="failed", end=now(), duration_s=round(time.time() - t0, 2),
                         error={"cell_index": e.cell_index, "ename": e.ename, "evalue": e.evalue})
            os.replace(partial, out_dir / f"{name}.failed.ipynb")
            record["status"] = "failed"
            write_run_json(run_path, record)
            raise NotebookFailed(f"{name} failed in cell {e.cell_index}: {e.ename}: {e.evalue}\n"
                                 f"  executed copy: {out_dir / (name + '.failed.ipynb')}\n"
                                 f"  after fixing: mufin run --resume {record['run_id']}") from None
        except BaseException:
            entry.update(status="interrupted", end=now(), duration_s=round(time.time() - t0, 2))
            record["status"] = "interrupted"
            write_run_json(run_path, record)
            raise
        tidy_executed(partial)
        os.replace(partial, final)
        entry.update(status="ok", end=now(), duration_s=round(time.time() - t0, 2), peak_rss_GB=peak.gb,
                     output=str(final.relative_to(run_path)))
        write_run_json(run_path, record)
        log(f"    ok in {entry['duration_s']:.1f} s" + (f", peak {peak.gb} GB" if peak.gb is not None else ""))
    record.update(status="ok", end=now())
    write_run_json(run_path, record)
    return record


def publish_figures(run_path: Path, dest: Path = FIGURES_DIR) -> list[Path]:
    """Copy a finished run's figures (every stage's *.png, and the paper's figures' *.pdf) to figures/, named
    <stage>__<figure>.<ext>, with figures/SOURCE.json saying which run they come from."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for png in sorted([*run_path.glob("*/*.png"), *run_path.glob("*/*.pdf")]):
        target = dest / f"{png.parent.name}__{png.name}"
        with atomic_path(target) as tmp:
            shutil.copyfile(png, tmp)
        out.append(target)
    record = json.loads((run_path / "run.json").read_text())
    with atomic_write(dest / "SOURCE.json") as f:
        json.dump({"run_id": record["run_id"], "preset": record["preset"], "git": record["git"],
                   "figures": [p.name for p in out]}, f, indent=2)
    return out


def start_run(preset: str | None, only: str | None, overrides: list[str], run_id: str | None = None,
              reuse: bool = False) -> tuple[dict, Path]:
    """Validate everything, then create runs/<id>/run.json. Raises ConfigError before anything runs."""
    specs = discover_notebooks()
    if not specs:
        raise ConfigError("notebooks/ holds no NN_*.ipynb notebook")
    preset_only = load_preset(preset).get("only") if preset else None
    selected = select_notebooks(specs, only or preset_only)
    if not (only or preset_only):  # asked for by name only: the ablations retrain the chain once per variant
        # (--only 08); outfit completion needs an outfit set (a preset such as mango names its notebooks)
        selected = [s for s in selected if s.name not in (ABLATIONS, OUTFITS)]
    if any(s.name == ABLATIONS for s in selected):  # the ablations compare with this run's chain: it runs too
        selected = [s for s in specs if s in selected or s.number in ablation.CHAIN]
    params = resolve_parameters(specs, selected, preset, overrides)
    check_parameters({s.name: {**s.parameters, **params[s.name]} for s in selected}, params_class)
    _check_variants({s.name: {"parameters": {**s.parameters, **params[s.name]}} for s in selected})
    run_id = check_run_id(run_id or new_run_id(preset))
    run_path = RUNS_DIR / run_id
    if (run_path / "run.json").exists():
        raise ConfigError(f"run '{run_id}' exists already ({run_path}); use --resume {run_id} or another --run-id")
    run_path.mkdir(parents=True, exist_ok=True)
    seeds = {v.get("seed") for v in params.values() if "seed" in v} | {s.parameters["seed"] for s in selected
                                                                         if "seed" in s.parameters and "seed" not in params[s.name]}
    record = {
        "run_id": run_id, "preset": preset, "only": only or preset_only, "overrides": overrides,
        "seed": sorted(seeds)[0] if len(seeds) == 1 else sorted(seeds),
        "git": git_commit(), "packages": package_versions(), "device": device_info(),
        "command": sys.argv, "start": now(), "end": None, "status": "created",
        "reuse": reuse or any(s.name == ABLATIONS for s in selected),
        "notebooks": {s.name: {"status": "pending", "parameters": {**{k: v for k, v in s.parameters.items() if k != "run_dir"},
                                                                    **params[s.name]}}
                      for s in selected},
    }
    write_run_json(run_path, record)
    return record, run_path


def resume_run(run_id: str, only: str | None = None, overrides: list[str] | None = None) -> tuple[dict, Path]:
    """Continue a run. With `only`, (re)run those notebooks in it: a notebook the run already had keeps its
    recorded parameters; one it did not have gets the run's preset and the overrides it declares (after
    stages run outside the runner, e.g. Module I under torchrun: --resume <id> --only 03,04,05,06).
    `overrides` (-p key=value or NN.key=value) change the parameters of the notebooks that will run; the change
    is recorded in run.json (the notebook's parameters, and the resume entry)."""
    run_path = RUNS_DIR / check_run_id(run_id)
    if not (run_path / "run.json").exists():
        known = [q.parent.name for q in RUNS_DIR.glob("*/run.json")] if RUNS_DIR.exists() else []
        raise ConfigError(f"no run '{run_id}' under {RUNS_DIR} (runs with run.json: {', '.join(sorted(known)) or 'none'})")
    record = json.loads((run_path / "run.json").read_text())
    record.setdefault("resumed", []).append({"time": now(), "git": git_commit(), "only": only,
                                             "overrides": list(overrides or [])})  # code may have changed
    if only:
        specs = discover_notebooks()
        selected = select_notebooks(specs, only)
        new = [s for s in selected if s.name not in record["notebooks"]]
        if new:  # the run's own overrides that they declare (the -p given now follows, below)
            params = resolve_parameters(specs, new, record.get("preset"), _declared(record.get("overrides"), new))
        for s in selected:
            if s.name in record["notebooks"]:
                record["notebooks"][s.name].update(status="pending")
            else:
                record["notebooks"][s.name] = {"status": "pending", "parameters": {
                    **{k: v for k, v in s.parameters.items() if k != "run_dir"}, **params[s.name]}}
        record["notebooks"] = dict(sorted(record["notebooks"].items()))
    if overrides:
        specs = discover_notebooks()
        todo = [s for s in specs if s.name in record["notebooks"] and record["notebooks"][s.name]["status"] != "ok"]
        if not todo:
            raise ConfigError(f"run {run_id}: every notebook is done, so -p changes nothing; "
                              "choose the notebooks to re-run with --only")
        final = apply_overrides(specs, todo, {s.name: dict(record["notebooks"][s.name]["parameters"]) for s in todo},
                                overrides)
        check_parameters(final, params_class)
        for s in todo:
            record["notebooks"][s.name]["parameters"] = final[s.name]
    _check_variants(record["notebooks"])
    return record, run_path


def add_run_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--preset", help=f"named preset from presets/ ({', '.join(available_presets())})")
    ap.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 01,03")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="[NN.]KEY=VALUE",
                    help="override one parameter: KEY in every selected notebook that declares it, NN.KEY (or "
                         "NOTEBOOK_NAME.KEY) in that notebook alone")
    ap.add_argument("--run-id", help="name of the run directory under runs/ (default: timestamp-preset)")
    ap.add_argument("--resume", metavar="RUN_ID",
                    help="continue a run from its first unfinished notebook; with --only, (re)run those notebooks in it")
    ap.add_argument("--list", action="store_true", help="list notebooks and their parameters, then exit")
    ap.add_argument("--publish", action="store_true", help="when the run succeeds, copy its figures to figures/")
    ap.add_argument("--reuse", action="store_true",
                    help="take each stage another run finished with the same parameters, inputs and code (always on "
                         "with notebook 08)")


def run_command(args: argparse.Namespace) -> int:
    if args.list:
        for s in discover_notebooks():
            print(s.name)
            for k, v in s.parameters.items():
                print(f"    {k}: {type(v).__name__} = {v!r}")
        return 0
    try:
        if args.resume and (args.preset or args.run_id):
            raise ConfigError("--resume continues a run with its recorded preset: it takes no --preset or "
                              "--run-id (--only re-runs or adds notebooks; -p NN.key=value changes them)")
        given = args.resume if args.resume is not None else args.run_id
        run_id = check_run_id(given if given is not None else new_run_id(args.preset))
        with RunLock(RUNS_DIR / run_id):  # one process per run id, from the checks to the last notebook
            if args.resume is not None:
                record, run_path = resume_run(run_id, args.only, args.param)
                record["reuse"] = record.get("reuse") or args.reuse or ABLATIONS in record["notebooks"]
            else:
                record, run_path = start_run(args.preset, args.only, args.param, run_id, args.reuse)
            print(f"run {record['run_id']} -> {run_path}")
            try:
                execute(record, run_path)
            except (NotebookFailed, ConfigError) as e:
                print(f"mufin run: {e}", file=sys.stderr)
                return 1
    except ConfigError as e:
        print(f"mufin run: error: {e}", file=sys.stderr)
        return 2
    print(f"done: {run_path / 'run.json'}")
    if args.publish:
        figs = publish_figures(run_path)
        print(f"published {len(figs)} figures to {FIGURES_DIR}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mufin_lib.run", description=__doc__.split("\n")[0])
    add_run_arguments(ap)
    return run_command(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
