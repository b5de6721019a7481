"""Set-up files stay consistent: notebooks stripped, smoke defaults, environment.yml == pyproject."""
import json
import re
import tomllib
from pathlib import Path

import yaml

from mufin_lib.config import discover_notebooks, load_preset

ROOT = Path(__file__).resolve().parent.parent


def test_notebooks_are_committed_stripped():
    nbs = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert nbs
    for p in nbs:
        nb = json.loads(p.read_text())
        for c in nb["cells"]:
            if c["cell_type"] == "code":
                assert not c.get("outputs"), f"{p.name}: a code cell has outputs (strip it: nbstripout)"
                assert c.get("execution_count") is None, f"{p.name}: a code cell has an execution count"
        assert re.match(r"^\d\d_[a-z0-9_]+\.ipynb$", p.name), p.name


def test_parameter_defaults_are_the_smoke_preset():
    smoke = load_preset("smoke")
    for spec in discover_notebooks():
        assert "run_dir" in spec.parameters, f"{spec.name}: declare run_dir: str = \"\""
        for k, v in (smoke.get("common") or {}).items():
            if k in spec.parameters:
                assert spec.parameters[k] == v, f"{spec.name}: default {k}={spec.parameters[k]!r}, smoke says {v!r}"
        for k, v in ((smoke.get("notebooks") or {}).get(spec.number) or {}).items():
            assert spec.parameters[k] == v, f"{spec.name}: default {k}={spec.parameters[k]!r}, smoke says {v!r}"


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_direct_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py = {_name(r) for r in pyproject["dependencies"]} | {_name(r) for r in pyproject["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = set(), set()
    for d in env["dependencies"]:
        if isinstance(d, dict):
            pip |= {_name(r) for r in d["pip"]}
        else:
            conda.add(_name(d))
    # conda names of the GPU builds; python, pip and pytorch-cuda are the conda machinery itself
    rename = {"pytorch": "torch", "faiss-gpu": "faiss-cpu"}
    listed = {rename.get(n, n) for n in conda | pip} - {"python", "pip", "pytorch-cuda"}
    assert listed == py, f"only in environment.yml: {listed - py}; only in pyproject: {py - listed}"


def test_constraints_pin_every_direct_dependency():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, ver = line.split("==")
            pins[name.lower()] = ver
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in pyproject["dependencies"] + pyproject["optional-dependencies"]["dev"]:
        assert _name(req) in pins, f"{_name(req)} is not pinned in constraints.txt"
    assert pins["torch"] == "2.15.0" and pins["torchvision"] == "0.29.2"
