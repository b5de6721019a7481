"""Set-up files stay consistent: notebooks stripped, smoke defaults, environment.yml == pyproject."""
import json
import re
import sys
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


def test_parameters_cells_match_their_stage_dataclasses():
    """One source of defaults: every parameter a notebook declares is a field of its stage's Params dataclass,
    with the same type and default (run_dir is the runner's). A default changed in one place fails here."""
    import dataclasses

    from mufin_lib.config import RUNNER_PARAMETERS
    from mufin_lib.layout import STAGES
    from mufin_lib.stages import params_class

    specs = discover_notebooks()
    assert [s.name for s in specs] == [s.notebook for s in STAGES], "every notebook is a stage of layout.STAGES, in order"
    for spec in specs:
        cls = params_class(spec.number)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        declared = {k: v for k, v in spec.parameters.items() if k not in RUNNER_PARAMETERS}
        assert declared, spec.name
        for name, value in declared.items():
            assert name in fields, f"{spec.name}: '{name}' is not a field of {cls.__name__}"
            default = fields[name].default
            assert type(value) is type(default), f"{spec.name}: {name} is {type(value).__name__}, {cls.__name__} says {type(default).__name__}"
            assert value == default, f"{spec.name}: {name} = {value!r}, {cls.__name__}.{name} = {default!r}"


def test_params_from_takes_declared_values_and_dataclass_defaults():
    from mufin_lib.config import params_from
    from mufin_lib.stages.module1 import Module1Params

    p = params_from(Module1Params, {"epochs": 9, "lr": 0.5, "not_a_field": 1, "run_dir": "x"})
    assert p.epochs == 9 and p.lr == 0.5 and p.keep_top_k == Module1Params().keep_top_k


def test_lab_saves_committed_notebooks_exactly_as_committed():
    """What JupyterLab adds when a notebook is opened, run and autosaved (outputs, counts, kernel metadata) is
    stripped by the pre-save hook of `make lab`: the file written equals the committed one, byte for byte."""
    import nbformat

    from mufin_lib.lab import strip_committed_notebooks

    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        committed = p.read_text()
        nb = nbformat.reads(committed, as_version=nbformat.NO_CONVERT)
        nb.metadata["language_info"] = {"name": "python", "version": "3.11.7", "mimetype": "text/x-python"}
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
        for c in nb.cells:
            c.metadata["execution"] = {"iopub.status.busy": "2026-11-25T10:00:00"}
            if c.cell_type == "code":
                c.execution_count = 3
                c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
        assert nbformat.writes(nb) != committed
        model = {"type": "notebook", "content": nb}
        strip_committed_notebooks(model, f"notebooks/{p.name}")
        assert nbformat.writes(model["content"]) + "\n" == committed, p.name  # nbformat.write adds the final newline
        run_copy = {"type": "notebook", "content": nbformat.reads(committed, as_version=4)}
        run_copy["content"].cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
        strip_committed_notebooks(run_copy, f"runs/x/notebooks/{p.name}")  # executed copies keep their outputs
        assert run_copy["content"].cells[1].outputs


def test_shared_data_skips_in_a_users_clone_and_fails_in_ci(tmp_path, monkeypatch):
    import pytest

    from tests.conftest import need_shared

    missing = tmp_path / "shared" / "data" / "amazon2018"
    monkeypatch.delenv("MUFIN_REQUIRE_SHARED", raising=False)
    with pytest.raises(pytest.skip.Exception, match="amazon2018 is missing"):
        need_shared(missing)
    monkeypatch.setenv("MUFIN_REQUIRE_SHARED", "1")
    with pytest.raises(pytest.fail.Exception, match="MUFIN_REQUIRE_SHARED=1 requires it"):
        need_shared(missing)
    missing.mkdir(parents=True)
    assert need_shared(missing) == missing


def port_hint() -> int:
    import os
    return os.getpid()


def test_lab_server_saves_leave_the_repository_clean(tmp_path):
    """`make lab`'s real server: a notebook saved with outputs and kernel metadata through the contents API (what
    autosave does) is written exactly as committed; runs/ is browsable from the same root."""
    import json as _json
    import socket
    import subprocess
    import time
    import urllib.error
    import urllib.request

    import nbformat

    from mufin_lib.lab import install_overrides, lab_command
    from mufin_lib.run import tidy_executed

    install_overrides()  # what `make lab` does before it starts Lab
    executed = ROOT / "runs" / f"_labtest_{port_hint()}" / "notebooks" / "01.ipynb"  # an executed, tidied notebook
    executed.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(), executed)
    tidy_executed(executed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = ROOT / "notebooks" / "04_module3_shortlists.ipynb"
    committed = target.read_text()
    proc = subprocess.Popen(lab_command(port, ["--no-browser", "--IdentityProvider.token=t", "--ServerApp.ip=127.0.0.1"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers = {"Authorization": "token t", "Content-Type": "application/json"}

    def call(method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers,
                                     data=None if body is None else _json.dumps(body).encode())
        return _json.loads(urllib.request.urlopen(req, timeout=30).read() or b"null")
    try:
        for _ in range(120):
            try:
                nb = call("GET", "/api/contents/notebooks/04_module3_shortlists.ipynb?content=1")["content"]
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("jupyter lab did not start")
        # served with the running kernel's own metadata: Lab does not mark the notebook modified on opening it
        from mufin_lib.lab import kernel_metadata
        assert nb["metadata"]["language_info"]["version"] == sys.version.split()[0]
        assert nb["metadata"] == kernel_metadata()
        for c in nb["cells"]:
            if c["cell_type"] == "code":
                c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x\n"}]
                c["execution_count"] = 5
        nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
        call("PUT", "/api/contents/notebooks/04_module3_shortlists.ipynb", {"type": "notebook", "format": "json", "content": nb})
        assert target.read_text() == committed
        assert {"notebooks", "mufin_lib"} <= {x["name"] for x in call("GET", "/api/contents/")["content"]}
        # a run's executed notebook opens read-only: Lab's autosave never rewrites a run's record
        rel = executed.relative_to(ROOT).as_posix()
        rec = call("GET", f"/api/contents/{rel}?content=1")
        assert rec["writable"] is False
        try:
            call("PUT", f"/api/contents/{rel}", {"type": "notebook", "format": "json", "content": rec["content"]})
            raise AssertionError("a run's record was saved over")
        except urllib.error.HTTPError as e:
            assert e.code == 403
        # no "Jupyter news" prompt, no update check: the kit's overrides are Lab's defaults
        schema = call("GET", "/lab/api/settings/@jupyterlab/apputils-extension:notification")["schema"]["properties"]
        assert schema["fetchNews"]["default"] == "false" and schema["checkForUpdates"]["default"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        target.write_text(committed)  # never leave the checkout changed, whatever happened
        import shutil
        shutil.rmtree(executed.parents[1], ignore_errors=True)


def test_progress_bars_are_widgets_in_a_notebook(tmp_path, monkeypatch):
    """Opened in JupyterLab (no MUFIN_PROGRESS), the kit's tqdm bars render as ipywidgets, without the
    'IProgress not found' warning; the runner's text bars are tested in test_runner."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("MUFIN_PROGRESS", raising=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from mufin_lib.progress import tqdm\nfor _ in tqdm(range(3)):\n    pass")]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outs = nb.cells[0].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outs), outs
    assert not any("IProgress not found" in o.get("text", "") for o in outs)


def test_no_notebook_import_shadows_one_of_its_parameters():
    """An import that rebinds a parameter's name (notebook 07's `peers` once met a module `peers`) would hand the
    module to the stage as the parameter's value."""
    import ast
    import json

    for spec in discover_notebooks():
        nb = json.loads(spec.path.read_text())
        bound = set()
        for c in nb["cells"]:
            if c["cell_type"] != "code" or "parameters" in c["metadata"].get("tags", []):
                continue
            for node in ast.walk(ast.parse("".join(c["source"]))):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        assert not bound & set(spec.parameters), f"{spec.name}: imports rebind parameters {bound & set(spec.parameters)}"
