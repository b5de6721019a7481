"""Faults (slow tier): the runner killed with SIGKILL inside curation and encoding, Module I, Module IV and evaluation
finishes with `--resume` to the same numbers as an uninterrupted run; two runs that share cache/ at once both
finish, with the same numbers."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
from tests.conftest import TINY

pytestmark = pytest.mark.slow


def runner(env, *args, **kw):
    return subprocess.Popen([sys.executable, "-m", "mufin_lib.run", *args], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def finish(p, timeout=900):
    _, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]


def status(run_dir: Path, nb: str) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text())["notebooks"][nb]["status"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def kill_when(p, ready, timeout=600):
    """SIGKILL the runner and its kernel (one process group) as soon as `ready()` holds."""
    t0 = time.time()
    while not ready():
        assert p.poll() is None, f"the run ended before the kill point: {p.stderr.read()[-2000:]}"
        assert time.time() - t0 < timeout, "the kill point never came"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def compare(a: Path, b: Path) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "compare_runs.py"), str(a), str(b)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]
    return r.stdout


def test_killed_runs_resume_to_the_same_numbers(tiny_run, tmp_path):
    ref, env = tiny_run  # the uninterrupted run
    # a fresh cache for the killed run: generation and encoding happen again, and are killed
    env = dict(env, MUFIN_RUNS_DIR=str(tmp_path / "runs"), MUFIN_CACHE_DIR=str(tmp_path / "cache2"))
    run = tmp_path / "runs" / "killed"
    cache2 = tmp_path / "cache2"
    kills = [  # (notebook, what must exist before the kill)
        ("01_dataset_curation", lambda: True),  # at once: starting the kernel or generating the catalogue
        ("01_dataset_curation", lambda: any(cache2.glob("datasets/synthetic-300-*/synthetic.json"))),  # then encoding
        ("02_module1_siamese", lambda: (run / "module1" / "checkpoints" / "last.pt").exists()),
        ("05_module4_ranker", lambda: (run / "module4" / "checkpoints" / "last.pt").exists()),
        ("06_evaluate", lambda: (run / "evaluate" / "alpha.json").exists()),
    ]
    first = True
    for nb, ready in kills:
        p = runner(env, *TINY, "--run-id", "killed") if first else \
            runner(env, "--resume", "killed")
        first = False
        kill_when(p, lambda: status(run, nb) == "running" and ready())
        assert status(run, nb) == "running"  # the record says where it stopped
    finish(runner(env, "--resume", "killed"))
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "ok" and len(rec["resumed"]) == len(kills)
    out = compare(ref, run)
    assert "0 differ" in out


def test_two_runs_sharing_the_cache_at_once(tmp_path):
    env = dict(os.environ, MUFIN_RUNS_DIR=str(tmp_path / "runs"), MUFIN_CACHE_DIR=str(tmp_path / "cache"),
               MUFIN_FIGURES_DIR=str(tmp_path / "figures"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    only01 = ["--preset", "smoke", "-p", "size=300", "--only", "01"]
    a = runner(env, *only01, "--run-id", "a")
    b = runner(env, *only01, "--run-id", "b")
    finish(a)
    finish(b)
    compare(tmp_path / "runs" / "a", tmp_path / "runs" / "b")
    assert not list((tmp_path / "cache" / "datasets").glob("*.partial-*"))  # nothing half-made left behind
