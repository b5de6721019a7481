import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mufin_lib.paths import AMAZON2018_DIR  # noqa: E402


def need_shared(path: Path) -> Path:
    """Data from ../shared (beside the checkout; a user's clone has none): the test skips, with the reason, when it
    is missing, unless MUFIN_REQUIRE_SHARED=1 (set by .ci/run), where a missing folder fails, never skips silently."""
    if not path.exists():
        why = f"{path} is missing (../shared/data beside the checkout; see data_manifest/ for how to get it)"
        if os.environ.get("MUFIN_REQUIRE_SHARED") == "1":
            pytest.fail(why + "; MUFIN_REQUIRE_SHARED=1 requires it")
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def amazon_dir():
    return need_shared(AMAZON2018_DIR)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The whole chain at smoke size through the runner (`mufin run --preset smoke`), in its own runs/: the smoke tier
    reads each stage's metrics.json from it; predict and the torchrun tests reuse it. It shares the project's
    cache/ (content-keyed: the generated catalogue and the encoder outputs), so that the notebooks under nbval, which
    run the same smoke chain afterwards, do not generate and encode it again; the slow tier's fault tests generate
    and encode in a fresh cache."""
    tmp = tmp_path_factory.mktemp("smoke")
    env = dict(os.environ, MUFIN_RUNS_DIR=str(tmp / "runs"), MUFIN_FIGURES_DIR=str(tmp / "figures"), HF_HUB_OFFLINE="1")
    # with Module I's text-only twin, so that the smoke tier can check that the photo helps
    r = subprocess.run([sys.executable, "-m", "mufin_lib.run", "--preset", "smoke", "--run-id", "smoke",
                        "-p", "02.compare_modalities=text"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp / "runs" / "smoke"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "ok"
    return run_dir, env


# A small chain for the slow tier (torchrun, faults): the smoke preset on 300 products, 2 epochs per training
TINY = ["--preset", "smoke", "-p", "size=300", "-p", "02.epochs=2", "-p", "05.epochs=2", "-p", "timing_points=5",
        "--only", "01,02,03,04,05,06"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    env = dict(os.environ, MUFIN_RUNS_DIR=str(tmp / "runs"), MUFIN_CACHE_DIR=str(tmp / "cache"),
               MUFIN_FIGURES_DIR=str(tmp / "figures"), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "mufin_lib.run", *TINY, "--run-id", "tiny"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "runs" / "tiny", env
