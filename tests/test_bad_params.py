"""Bad input, parameters and presets: refused before any kernel starts, naming the file, the key and what was expected."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mufin_lib.run", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("item, says", [
    ("test_fraction=nan", "parameter 'test_fraction' must be a finite number"),
    ("01.seed=-1", "parameter 'seed' must be in [0, inf]"),
    ("02.seed=-1", "parameter 'seed' must be in [0, inf]"),
    ("size=0", "parameter 'size' must be smoke, default or a number of products of 30 or more"),
    ("size=lots", "parameter 'size' must be smoke, default or a number of products of 30 or more"),
    ("06.alpha_metric=P@7", "parameter 'alpha_metric' must be one of"),
])
def test_values_are_refused_before_anything_runs(tmp_path, item, says):
    r = _run("--preset", "smoke", "-p", item, "--run-id", "never")
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert not (ROOT / "runs" / "never").exists()


@pytest.mark.parametrize("text, says", [
    ("notebooks: {01: {size: smoke}\n  bad: [", "line"),  # YAML that does not parse: its line
    ("- one\n- two\n", "expected a mapping with description, common and notebooks; got list"),
    ("notebooks:\n  - 01\n", "`notebooks` must be a mapping (name: value), got list"),
    ("common: [seed, 0]\n", "`common` must be a mapping (name: value), got list"),
    ("notebooks:\n  '02': [epochs, 3]\n", "notebooks.02 must be a mapping (parameter: value), got list"),
])
def test_malformed_presets_name_the_file(tmp_path, monkeypatch, text, says):
    from mufin_lib import config

    (tmp_path / "broken.yaml").write_text(text)
    monkeypatch.setattr(config, "PRESETS_DIR", tmp_path)
    with pytest.raises(config.ConfigError) as e:
        config.load_preset("broken")
    assert str(tmp_path / "broken.yaml") in str(e.value) and says in str(e.value)
