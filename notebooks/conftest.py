"""nbval executes the notebooks in order in runs/interactive/, where notebook 01 makes the smoke catalogue and each
later notebook reads its predecessors. Notebook 14 (outfit completion) needs a run whose stage 01 read an outfit set:
before its first cell, the chain 01-05 of preset outfits-smoke is made here through the runner, in
runs/interactive-outfits/ (the run notebook 14 opens when no run_dir is given), fresh for each session."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_made = set()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if "14_outfits" not in str(getattr(item, "path", "")) or "outfits" in _made:
        return
    _made.add("outfits")
    sys.path.insert(0, str(ROOT))
    from mufin_lib.paths import RUNS_DIR
    from mufin_lib.stages.outfits import INTERACTIVE_RUN

    shutil.rmtree(RUNS_DIR / INTERACTIVE_RUN, ignore_errors=True)
    r = subprocess.run([sys.executable, "-m", "mufin_lib.run", "--preset", "outfits-smoke", "--only", "01,02,03,04,05",
                        "--run-id", INTERACTIVE_RUN], cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"),
                       capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        pytest.fail("the outfit run notebook 14 reads could not be made:\n" + r.stderr[-3000:])
