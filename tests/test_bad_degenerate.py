"""Bad input, empty or degenerate: refused up front, naming the file, or the parameter and its valid range."""
import pytest

from mufin_lib.data.curate import curate_amazon
from tests.badinput import lines_file


def test_empty_metadata_file_is_refused_naming_it(tmp_path):
    p = tmp_path / "empty.json"
    p.write_text("")
    with pytest.raises(ValueError, match=r"empty.json: no product kept from 0 input lines \(no lines\)"):
        curate_amazon([p])
    q = lines_file(tmp_path / "blank.json", [b"", b"{not json"])
    with pytest.raises(ValueError, match=r"blank.json: no product kept from 2 input lines \(malformed_line 1, blank_line 1\)"):
        curate_amazon([q])


def test_out_of_range_parameters_are_refused_before_anything_runs(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, MUFIN_RUNS_DIR=str(tmp_path / "runs"))
    cases = {("-p", "test_fraction=1.5"): "parameter 'test_fraction' must be in (0, 1), got 1.5",
             ("-p", "test_fraction=-0.2"): "parameter 'test_fraction' must be in (0, 1), got -0.2",
             ("-p", "02.epochs=0"): "parameter 'epochs' must be in [1, inf], got 0",
             ("-p", "source=csv"): "parameter 'source' must be one of 'synthetic', 'amazon-json', 'xc-dir', 'polyvore', got 'csv'",
             ("-p", "05.combiner=mlp"): "parameter 'combiner' must be one of 'cross_attention', 'concat', 'none'"}
    for args, words in cases.items():
        r = subprocess.run([sys.executable, "-m", "mufin_lib.run", "--preset", "smoke", *args], cwd=root, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr[-500:])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*/notebooks/*.ipynb"))
    r = subprocess.run([sys.executable, "-m", "mufin_lib.cli", "predict", "--run", "x", "--input", "y", "--top-k", "0"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "expected a whole number of 1 or more, got 0" in r.stderr
