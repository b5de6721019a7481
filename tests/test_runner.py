"""The papermill runner: validation before anything runs, run.json, failure and --resume."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mufin_lib.config import (ConfigError, available_presets, coerce, discover_notebooks, resolve_parameters,
                              select_notebooks)

ROOT = Path(__file__).resolve().parent.parent


def make_nb(path: Path, params: str, body: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    log = tmp_path / "log.txt"
    flag = tmp_path / "flag"
    make_nb(d / "01_first.ipynb", f'n: int = 1\nlog: str = "{log}"\nrun_dir: str = ""',
            "open(log, 'a').write(f'01 n={n}\\n')")
    make_nb(d / "02_flaky.ipynb", f'flag: str = "{flag}"\nrun_dir: str = ""',
            "import os\nif not os.path.exists(flag):\n    raise RuntimeError('flag file missing')\n"
            f"open('{log}', 'a').write('02\\n')")
    make_nb(d / "03_last.ipynb", 'rate: float = 0.5\nname: str = "x"\nrun_dir: str = ""',
            f"open('{log}', 'a').write(f'03 rate={{rate}}\\n')")
    return d, log, flag


def mufin(nbdir, tmp_path, *args):
    env = dict(os.environ, MUFIN_NOTEBOOKS_DIR=str(nbdir), MUFIN_RUNS_DIR=str(tmp_path / "runs"),
               MUFIN_FIGURES_DIR=str(tmp_path / "figures"))
    return subprocess.run([sys.executable, "-m", "mufin_lib.run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_unknown_parameter_is_refused_naming_valid_ones(nbdir, tmp_path):
    d, log, _ = nbdir
    r = mufin(d, tmp_path, "-p", "no_such_param=1")
    assert r.returncode == 2
    assert "no_such_param" in r.stderr
    for name in ("n", "flag", "rate", "name"):
        assert name in r.stderr.split("valid parameters:")[1]
    assert not log.exists(), "nothing may run when a parameter is refused"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_mistyped_value_and_unknown_notebook_and_preset(nbdir, tmp_path):
    d, log, _ = nbdir
    r = mufin(d, tmp_path, "-p", "n=abc")
    assert r.returncode == 2 and "'n' expects int" in r.stderr
    r = mufin(d, tmp_path, "--only", "07")
    assert r.returncode == 2 and "no notebook '07'" in r.stderr and "01_first" in r.stderr
    r = mufin(d, tmp_path, "--preset", "nope")
    assert r.returncode == 2 and "no preset 'nope'" in r.stderr and "smoke" in r.stderr
    assert not log.exists()


def test_failure_then_resume_finishes_the_rest(nbdir, tmp_path):
    d, log, flag = nbdir
    r = mufin(d, tmp_path, "--run-id", "r1", "-p", "n=7", "-p", "rate=2")
    assert r.returncode == 1
    assert "02_flaky failed" in r.stderr and "flag file missing" in r.stderr and "--resume r1" in r.stderr
    run = json.loads((tmp_path / "runs/r1/run.json").read_text())
    assert [v["status"] for v in run["notebooks"].values()] == ["ok", "failed", "pending"]
    assert run["notebooks"]["02_flaky"]["error"]["ename"] == "RuntimeError"
    assert (tmp_path / "runs/r1/notebooks/01_first.ipynb").exists()
    assert (tmp_path / "runs/r1/notebooks/02_flaky.failed.ipynb").exists()
    assert not (tmp_path / "runs/r1/notebooks/02_flaky.ipynb").exists()
    assert log.read_text() == "01 n=7\n"
    flag.write_text("")
    r = mufin(d, tmp_path, "--resume", "r1")
    assert r.returncode == 0, r.stderr
    assert log.read_text() == "01 n=7\n02\n03 rate=2.0\n"  # 01 not run again; recorded parameters reused
    run = json.loads((tmp_path / "runs/r1/run.json").read_text())
    assert run["status"] == "ok" and all(v["status"] == "ok" for v in run["notebooks"].values())
    assert run["notebooks"]["03_last"]["parameters"] == {"rate": 2.0, "name": "x"}
    assert {"git", "packages", "device", "seed", "start", "end"} <= set(run)
    assert run["device"]["cpu"] and run["device"]["cpu_count"] >= 1  # where the numbers were made
    assert len(run["resumed"]) == 1 and "git" in run["resumed"][0]
    assert all(v["duration_s"] is not None for v in run["notebooks"].values())


def test_run_writes_nothing_into_notebooks(nbdir, tmp_path):
    d, log, flag = nbdir
    flag.write_text("")
    before = sorted(p.name for p in d.iterdir())
    r = mufin(d, tmp_path, "--only", "01,03", "--run-id", "r2", "--publish")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in d.iterdir()) == before
    assert log.read_text() == "01 n=1\n03 rate=0.5\n"
    assert json.loads((tmp_path / "figures" / "SOURCE.json").read_text())["run_id"] == "r2"
    out = nbformat.read(tmp_path / "runs/r2/notebooks/03_last.ipynb", as_version=4)
    assert any("run_dir" in "".join(c.source) for c in out.cells if "injected-parameters" in c.metadata.get("tags", []))


def test_coerce_types():
    assert coerce("x", 1, "3", "t") == 3
    assert coerce("x", 1.0, "3", "t") == 3.0
    assert coerce("x", 1.0, "5e-3", "t") == 0.005  # YAML alone reads 5e-3 as a string
    assert coerce("x", 1.0, "5e-3", "t") == coerce("x", 1.0, 5e-3, "t")
    with pytest.raises(ConfigError):
        coerce("x", 1.0, "fast", "t")
    assert coerce("x", True, "false", "t") is False
    assert coerce("x", "a", "b", "t") == "b"
    with pytest.raises(ConfigError):
        coerce("x", 1, "1.5", "t")
    with pytest.raises(ConfigError):
        coerce("x", True, 1, "t")


def test_presets_are_valid_for_the_real_notebooks():
    specs = discover_notebooks()
    assert specs, "notebooks/ must hold numbered notebooks"
    assert {"smoke", "default", "paper"} <= set(available_presets())
    for preset in available_presets():
        resolve_parameters(specs, select_notebooks(specs, None), preset, [])


def test_resume_with_only_reruns_and_adds_notebooks(nbdir, tmp_path):
    """After a stage ran outside the runner (torchrun), --resume <id> --only re-runs or adds notebooks."""
    d, log, flag = nbdir
    r = mufin(d, tmp_path, "--only", "01", "--run-id", "r3", "-p", "n=4")
    assert r.returncode == 0, r.stderr
    r = mufin(d, tmp_path, "--resume", "r3", "--only", "03,01")
    assert r.returncode == 0, r.stderr
    assert log.read_text() == "01 n=4\n01 n=4\n03 rate=0.5\n"  # 01 keeps its recorded n; 03 gets its defaults
    run = json.loads((tmp_path / "runs/r3/run.json").read_text())
    assert list(run["notebooks"]) == ["01_first", "03_last"] and run["status"] == "ok"
    assert run["resumed"][0]["only"] == "03,01"
    r = mufin(d, tmp_path, "--resume", "r3", "-p", "n=5")
    assert r.returncode == 2 and "every notebook is done, so -p changes nothing" in r.stderr
    r = mufin(d, tmp_path, "--resume", "r3", "--preset", "smoke")
    assert r.returncode == 2 and "takes no --preset or --run-id" in r.stderr


def test_parameters_addressed_to_one_notebook_and_changed_on_resume(nbdir, tmp_path):
    """-p NN.key=value sets one notebook's parameter; --resume <id> --only NN -p NN.key=value re-runs that stage with
    the new value, recorded in run.json."""
    d, log, flag = nbdir
    make_nb(d / "04_twin.ipynb", 'rate: float = 0.25\nrun_dir: str = ""', f"open('{log}', 'a').write(f'04 rate={{rate}}\\n')")
    r = mufin(d, tmp_path, "--only", "03,04", "--run-id", "r4", "-p", "04.rate=0.75")
    assert r.returncode == 0, r.stderr
    assert log.read_text() == "03 rate=0.5\n04 rate=0.75\n"  # 03 kept its default
    r = mufin(d, tmp_path, "--only", "03,04", "--run-id", "r5", "-p", "rate=0.1", "-p", "03_last.rate=0.2")
    assert r.returncode == 0, r.stderr
    assert log.read_text().endswith("03 rate=0.2\n04 rate=0.1\n")  # the addressed value wins for its notebook
    r = mufin(d, tmp_path, "--only", "03", "--run-id", "r6", "-p", "04.rate=1")
    assert r.returncode == 2 and "notebook 04_twin is not selected" in r.stderr
    r = mufin(d, tmp_path, "-p", "01.rate=1")
    assert r.returncode == 2 and "notebook 01_first does not declare 'rate'" in r.stderr and "valid parameters: log, n" in r.stderr
    r = mufin(d, tmp_path, "-p", "09.rate=1")
    assert r.returncode == 2 and "no notebook '09'" in r.stderr
    r = mufin(d, tmp_path, "--resume", "r4", "--only", "04", "-p", "04.rate=0.9")
    assert r.returncode == 0, r.stderr
    assert log.read_text().endswith("04 rate=0.9\n")
    run = json.loads((tmp_path / "runs/r4/run.json").read_text())
    assert run["notebooks"]["04_twin"]["parameters"]["rate"] == 0.9
    assert run["notebooks"]["03_last"]["parameters"]["rate"] == 0.5
    assert run["resumed"][-1]["overrides"] == ["04.rate=0.9"]
    r = mufin(d, tmp_path, "--resume", "r4", "--only", "04", "-p", "03.rate=0.9")  # 03 does not run
    assert r.returncode == 2 and "notebook 03_last is not selected" in r.stderr


def test_console_shows_the_notebooks_progress_and_no_kernel_noise(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    make_nb(d / "01_progress.ipynb", 'n: int = 3\nrun_dir: str = ""',
            "import os, sys\nfrom mufin_lib.progress import tqdm\n"
            "assert os.environ['MUFIN_PROGRESS'] == 'text'\n"
            "for _ in tqdm(range(n), desc='working hard', mininterval=0):\n    pass\nprint('to stderr', file=sys.stderr)")
    r = mufin(d, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "working hard: 100%" in r.stderr and "to stderr" in r.stderr  # the stage's own progress, live
    assert "without encryption" not in r.stderr and "KeyboardInterrupt" not in r.stderr


def test_executed_notebook_is_tidied_and_read_only(tmp_path):
    """No progress-bar text in a run's saved outputs, the rest kept, and the file read-only (Lab never rewrites it)."""
    import os
    import stat

    import nbformat

    from mufin_lib.run import tidy_executed

    nb = nbformat.v4.new_notebook()
    c = nbformat.v4.new_code_cell("x = 1")
    c.outputs = [nbformat.v4.new_output("stream", name="stderr", text="module I epoch 1/4: 100%|##| 5/5 [00:01<00:00, 4.1it/s]\r"),
                 nbformat.v4.new_output("stream", name="stderr", text="\r                                   \r"),
                 nbformat.v4.new_output("stream", name="stdout", text="P@1 12.5\n"),
                 nbformat.v4.new_output("stream", name="stderr", text="UserWarning: something to read\n")]
    nb.cells.append(c)
    p = tmp_path / "run.ipynb"
    nbformat.write(nb, p)
    tidy_executed(p)
    out = nbformat.read(p, as_version=4).cells[0].outputs
    assert [o["text"] for o in out] == ["P@1 12.5\n", "UserWarning: something to read\n"]
    assert not os.stat(p).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
