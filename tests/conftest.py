import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mufin_lib.paths import AMAZON2018_DIR  # noqa: E402


@pytest.fixture(scope="session")
def amazon_dir():
    if not AMAZON2018_DIR.exists():
        pytest.fail(f"{AMAZON2018_DIR} is missing: the real Amazon samples in ../shared/data/amazon2018 are needed")
    return AMAZON2018_DIR
