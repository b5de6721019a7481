"""Bad input, runs: run ids that would write outside runs/, and two processes on one run id."""
import os
import subprocess
import sys

import pytest

from tests.test_runner import ROOT, mufin, nbdir  # noqa: F401 (the fixture)

BAD_IDS = ["..", ".", "../x", "/tmp/x", "a/b", "a b", "r\u00fcn", "x" * 101, "a..b", ""]


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_a_run_id_is_one_safe_name(nbdir, tmp_path, run_id):  # noqa: F811
    before = sorted(p.name for p in ROOT.iterdir())
    d = nbdir[0]
    r = mufin(d, tmp_path, "--run-id", run_id)
    assert r.returncode == 2 and "expected one name of letters, digits" in r.stderr, r.stderr
    r = mufin(d, tmp_path, "--resume", run_id)
    assert r.returncode == 2 and "expected one name of letters, digits" in r.stderr, r.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before  # nothing written beside the project's own files
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_second_process_on_one_run_id_is_refused_and_a_dead_holders_lock_taken_over(nbdir, tmp_path):  # noqa: F811
    d = nbdir[0]
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "run.lock").write_text(str(os.getpid()))  # a live holder: this test process
    r = mufin(d, tmp_path, "--run-id", "r1", "--only", "01")
    assert r.returncode == 2 and f"is being run by process {os.getpid()}" in r.stderr, r.stderr
    assert not (run / "run.json").exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / "run.lock").write_text(gone.stdout.strip())  # its process has exited (as after kill -9)
    r = mufin(d, tmp_path, "--run-id", "r1", "--only", "01")
    assert r.returncode == 0, r.stderr
    assert (run / "run.json").exists() and not (run / "run.lock").exists()  # released at the end
    r = mufin(d, tmp_path, "--run-id", "r1", "--only", "01")  # the id is taken: refused, the run kept
    assert r.returncode == 2 and "exists already" in r.stderr
