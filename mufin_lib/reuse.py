"""Stage reuse for the runner: a stage whose parameters and inputs are those of a stage another run has finished is
taken from that run instead of being run again (the ablations' variants retrain only what they change).

A notebook's key is a digest of: the code (git commit, and the uncommitted diff of tracked files), its notebook's
name and resolved parameters (run_dir aside), the digest of its input files (stage 01's `input_path`), and the key of
the notebook before it in the run (every stage reads the ones before it). Equal keys: equal outputs, up to the
float noise of the machine. The runner records each notebook's key in run.json; a reused notebook's stage folder is
hard-linked from the other run (every writer of the kit replaces a file atomically, so a later write in either run
never changes the other's file), its JSON files rewritten where they name the other run's folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from .layout import BY_NUMBER
from .paths import PROJECT_ROOT, atomic_write, resolve


@lru_cache(maxsize=1)
def code_digest() -> str:
    """The commit, and a digest of the uncommitted changes to tracked files: a stage is reused only under the code
    that made it."""
    def git(*args):
        r = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True)
        return r.stdout if r.returncode == 0 else b""
    commit = git("rev-parse", "HEAD").strip().decode() or "no-git"
    return f"{commit}+{hashlib.sha256(git('diff', 'HEAD')).hexdigest()[:16]}"


def _file_digest(path: Path, h) -> None:
    if path.is_file():
        h.update(f"{path.name}:{path.stat().st_size}:".encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    elif path.is_dir():  # a dataset folder (images): names, sizes and times, not every byte
        for p in sorted(path.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns};".encode())
    else:
        h.update(f"missing:{path}".encode())


def input_digest(params: dict) -> str:
    """Digest of the files a notebook reads from outside the run (stage 01's input_path; "" for the others)."""
    paths = [p.strip() for p in str(params.get("input_path", "")).split(",") if p.strip()]
    if not paths:
        return ""
    h = hashlib.sha256()
    for p in paths:
        _file_digest(resolve(p), h)
    return h.hexdigest()


def notebook_keys(notebooks: dict) -> dict[str, str]:
    """name -> key of every notebook of a run record's `notebooks` (in their order: each key includes the last)."""
    keys, last = {}, ""
    for name, entry in notebooks.items():
        params = {k: v for k, v in entry["parameters"].items() if k != "run_dir"}
        blob = json.dumps({"code": code_digest(), "notebook": name, "parameters": params,
                           "inputs": input_digest(params), "after": last}, sort_keys=True, default=str)
        keys[name] = last = hashlib.sha256(blob.encode()).hexdigest()
    return keys


def find_done(runs_dir: Path, key: str, name: str, exclude: Path) -> tuple[Path, dict] | None:
    """A finished notebook `name` with this key in another run under runs_dir, whose stage folder is still there:
    (its run folder, its run.json entry)."""
    folder = BY_NUMBER[name[:2]].name
    for f in sorted(Path(runs_dir).glob("*/run.json")):
        if f.parent == exclude:
            continue
        try:
            entry = json.loads(f.read_text())["notebooks"].get(name)
        except (OSError, ValueError, KeyError):
            continue
        if (entry and entry.get("status") == "ok" and entry.get("key") == key and (f.parent / folder).is_dir()
                and (f.parent / "notebooks" / f"{name}.ipynb").exists()):
            return f.parent, entry
    return None


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def take(source: Path, target: Path, name: str) -> list[str]:
    """Take notebook `name`'s stage folder and executed notebook from run `source` into run `target` (replacing what
    target has of it); returns the files taken, relative to the run folder."""
    folder = BY_NUMBER[name[:2]].name
    dst_stage = target / folder
    if dst_stage.exists():
        shutil.rmtree(dst_stage)
    taken = []
    old, new = str(source.resolve()), str(target.resolve())
    for src in sorted((source / folder).rglob("*")):
        if not src.is_file():
            continue
        dst = target / src.relative_to(source)
        if src.suffix == ".json" and old in (text := src.read_text()):
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(dst) as f:  # names the other run's folder (dataset.json's root): this run's instead
                f.write(text.replace(old, new))
        else:
            _link(src, dst)
        taken.append(str(dst.relative_to(target)))
    nb = target / "notebooks" / f"{name}.ipynb"
    nb.unlink(missing_ok=True)
    _link(source / "notebooks" / f"{name}.ipynb", nb)
    return taken
