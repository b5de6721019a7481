"""data_manifest/: the synthetic catalogue regenerates bit for bit; the real samples match; damage is named."""
import shutil

from mufin_lib.data.manifest import load_manifest, verify, verify_command
from mufin_lib.data.synthetic import GENERATOR_VERSION, SyntheticParams, generate


def test_real_samples_match_their_checksums(amazon_dir):
    m = load_manifest("amazon2018-samples")
    checks = verify(m, amazon_dir)
    assert len(checks) == 4 and all(c.status == "ok" for c in checks)


def test_synthetic_smoke_regenerates_bit_for_bit(tmp_path):
    m = load_manifest("synthetic-smoke")
    g = dict(m["generator"])
    assert g.pop("generator_version") == GENERATOR_VERSION, "generator changed: run tools/update_manifest.py"
    generate(tmp_path / "syn", SyntheticParams(**g))
    checks = verify(m, tmp_path / "syn")
    assert checks and all(c.status == "ok" for c in checks), [c for c in checks if c.status != "ok"]
    # damage one file, remove another: both are named
    (tmp_path / "syn" / "tst_X_Y.txt").write_text("0 0\n")
    (tmp_path / "syn" / "raw_data" / "label.raw.txt").unlink()
    bad = {c.path: c.status for c in verify(m, tmp_path / "syn") if c.status != "ok"}
    assert bad == {"tst_X_Y.txt": "size_mismatch", "raw_data/label.raw.txt": "missing"}


def test_verify_command_exit_codes(tmp_path, amazon_dir, capsys):
    assert verify_command("amazon2018-samples") == 0
    shutil.copy(amazon_dir / "meta_Gift_Cards.json.gz", tmp_path / "meta_Gift_Cards.json.gz")
    assert verify_command("amazon2018-samples", str(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "missing" in out and "meta_Appliances.first100.json.gz" in out
    assert verify_command("no-such-dataset") == 2


def test_verify_reads_the_contents_where_no_checksum_is_known(tmp_path, capsys):
    """MM-AmazonTitles-300K's checksums are unknown to the kit: verify then parses the layout (and its label count)."""
    from mufin_lib.data.synthetic import SyntheticParams, generate

    root = tmp_path / "mm"
    generate(root, SyntheticParams(n_products=40, seed=3))
    (root / "img.urls.txt").touch()
    assert verify_command("mm-amazontitles-300k", str(root)) == 1
    out = capsys.readouterr().out
    assert "40 labels, expected 303,296" in out
    y = root / "trn_X_Y.txt"
    lines = y.read_text().splitlines()
    y.write_text("\n".join(lines[:2] + [lines[2].split()[0].split(":")[0] + ":nan"] + lines[3:]) + "\n")
    assert verify_command("mm-amazontitles-300k", str(root)) == 1
    assert "trn_X_Y.txt: line 3: label" in capsys.readouterr().out


def test_psp_constants_come_from_the_data_sets_manifest():
    """pyxclib's A, B per data set: Amazon 0.6 / 2.6, others 0.55 / 1.5, from data_manifest/NAME.yaml; stage 01
    takes the manifest the preset names, else the one its source implies, else the setting for other data."""
    import pytest

    from mufin_lib.stages.dataset import DatasetParams, propensity

    assert propensity(DatasetParams(source="synthetic", size="smoke")) == {
        "A": 0.55, "B": 1.5, "from": "data_manifest/synthetic-smoke.yaml"}
    amazon = propensity(DatasetParams(source="amazon-json", input_path="x.json.gz"))
    assert (amazon["A"], amazon["B"], amazon["from"]) == (0.6, 2.6, "data_manifest/amazon2018-samples.yaml")
    hm = propensity(DatasetParams(source="amazon-json", input_path="x.json.gz", manifest="hm"))
    assert (hm["A"], hm["B"]) == (0.55, 1.5)  # H&M is not Amazon data, though its metadata has Amazon's schema
    paper = propensity(DatasetParams(source="xc-dir", input_path="d", manifest="mm-amazontitles-300k"))
    assert (paper["A"], paper["B"]) == (0.6, 2.6)
    other = propensity(DatasetParams(source="xc-dir", input_path="d"))
    assert (other["A"], other["B"]) == (0.55, 1.5) and "no manifest" in other["from"]
    with pytest.raises(FileNotFoundError, match="no dataset 'nope'"):
        propensity(DatasetParams(source="xc-dir", input_path="d", manifest="nope"))
