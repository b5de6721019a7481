"""Bad input, images: every img.bin line accounted for; the statistics count what decodes."""



def test_corrupt_and_unknown_images_are_accounted_for_and_not_counted_as_images(tmp_path):
    from mufin_lib.data.prepare import prepare_dataset
    from mufin_lib.stages.dataset import DatasetParams
    from mufin_lib.data.synthetic import SyntheticParams, generate
    from mufin_lib.data.xc import read_xc

    root = tmp_path / "syn"
    generate(root, SyntheticParams(n_products=80, seed=4))
    _, clean = prepare_dataset(DatasetParams(source="xc-dir", input_path=str(root)), tmp_path / "clean")
    ds = read_xc(root)
    no_image = [u for u in ds.uids["label"]
                if not any(l.startswith(u.encode() + b"\t") for l in (root / "images" / "label.img.bin").read_bytes().splitlines())]
    assert len(no_image) >= 2
    with open(root / "images" / "label.img.bin", "ab") as f:
        f.write(f"{no_image[0]}\t!!!not base64!!!\n".encode())
        f.write(f"{no_image[1]}\taGVsbG8gd29ybGQ=\n".encode())  # base64 of text, not an image
        f.write(b"SOMEONE-ELSE\taGVsbG8gd29ybGQ=\n")  # not a product of this dataset
        f.write(b"no tab on this line\n")
    _, info = prepare_dataset(DatasetParams(source="xc-dir", input_path=str(root)), tmp_path / "dirty")
    assert info["stats"]["products_without_image"] == clean["stats"]["products_without_image"]
    assert info["stats"]["avg_images_per_product"] == clean["stats"]["avg_images_per_product"]
    rep, before = info["image_read_report"], clean["image_read_report"]
    assert rep["lines"] == before["lines"] + 4 and rep["accounted_for"] == rep["lines"]
    assert rep["kept"] == before["kept"] and rep["unknown_uid"] == 1 and rep["corrupt"] == 3
    whys = sorted(why for _, why in rep["corrupt_lines"])
    assert whys[0] == "no `UID<TAB>` prefix" and whys[1].startswith("not an image") and whys[2].startswith("not base64")
    n = len((root / "images" / "label.img.bin").read_bytes().splitlines())
    assert {where for where, _ in rep["corrupt_lines"]} == {f"label.img.bin:{n - k}" for k in (3, 2, 0)}


def _bomb(path):
    """A 20000 x 20000 PNG: a 50 KB file Pillow refuses as a decompression bomb."""
    from PIL import Image
    Image.new("1", (20000, 20000)).save(path, optimize=True)
    return path


def test_one_bad_image_never_sinks_the_data_set(tmp_path):
    """A decompression bomb and a symlink loop among a product's local images: one named image problem each, the
    product kept with its other image; the pixel limit is stage 01's max_image_pixels."""
    import gzip
    import json
    import os

    from PIL import Image

    from mufin_lib.data.prepare import prepare_dataset
    from mufin_lib.stages.dataset import DatasetParams

    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "good.png")
    _bomb(tmp_path / "bomb.png")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    with gzip.open(tmp_path / "meta.json.gz", "wt") as f:
        for i in range(12):
            imgs = ["good.png"] + (["bomb.png"] if i == 1 else []) + (["loop.jpg"] if i == 2 else [])
            f.write(json.dumps({"asin": f"P{i:02d}", "title": f"product {i}", "image": imgs,
                                "also_buy": [f"P{(i + 1) % 12:02d}", f"P{(i + 2) % 12:02d}"]}) + "\n")
    _, info = prepare_dataset(DatasetParams(source="amazon-json", input_path=str(tmp_path / "meta.json.gz")), tmp_path / "out")
    im = info["curation_report"]["images"]
    assert im["failures_by_reason"] == {"too_many_pixels": 1, "symlink_loop": 1}
    assert info["stats"]["products_without_image"] == 0  # P01 and P02 keep good.png
    # a lower limit refuses the good 40 x 40 image too: the parameter is the bound
    _, low = prepare_dataset(DatasetParams(source="amazon-json", input_path=str(tmp_path / "meta.json.gz"),
                                           max_image_pixels=1000), tmp_path / "low")
    assert low["curation_report"]["images"]["failures_by_reason"]["too_many_pixels"] == 2


def test_a_bomb_on_an_img_bin_line_is_one_corrupt_line(tmp_path):
    import base64

    from mufin_lib.data.prepare import prepare_dataset
    from mufin_lib.data.synthetic import SyntheticParams, generate
    from mufin_lib.stages.dataset import DatasetParams

    root = tmp_path / "syn"
    generate(root, SyntheticParams(n_products=60, seed=4))
    uid = (root / "raw_data" / "label.raw.txt").read_text().splitlines()[0].split("->")[0]
    with open(root / "images" / "label.img.bin", "a") as f:
        f.write(f"{uid}\t{base64.b64encode(_bomb(tmp_path / 'b.png').read_bytes()).decode()}\n")
    _, info = prepare_dataset(DatasetParams(source="xc-dir", input_path=str(root)), tmp_path / "out")
    rep = info["image_read_report"]
    assert rep["accounted_for"] == rep["lines"]
    assert any(why.startswith("too_many_pixels") for _, why in rep["corrupt_lines"])


def test_mufin_data_images_end_to_end(tmp_path):
    """`mufin data images DIR` builds the img.bin files from img.urls.txt (local files here) and says what it did."""
    import subprocess
    import sys

    from PIL import Image

    from mufin_lib.data.synthetic import SyntheticParams, generate
    from tests.conftest import ROOT

    root = tmp_path / "syn"
    generate(root, SyntheticParams(n_products=30, seed=2, with_images=False))
    uids = [l.split("->")[0] for l in (root / "raw_data" / "label.raw.txt").read_text().splitlines()]
    Image.new("RGB", (50, 30), (10, 120, 200)).save(tmp_path / "a.png")
    (root / "img.urls.txt").write_text(f"{uids[0]}\t{tmp_path / 'a.png'}\n{uids[1]}\t{tmp_path / 'gone.png'}\n"
                                       f"{uids[2]}\t{_bomb(tmp_path / 'b.png')}\n")
    r = subprocess.run([sys.executable, "-m", "mufin_lib.cli", "data", "images", str(root)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("references 3:") and "failed 2" in r.stdout
    import json
    rep = json.loads((root / "images" / "build_report.json").read_text())
    assert rep["failures_by_reason"] == {"missing_file": 1, "too_many_pixels": 1}
    assert rep["written"]["label"] == 1
