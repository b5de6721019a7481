"""Bad input, filter_labels: an out-of-range or malformed pair names its file and line."""
import pytest



def test_filter_pair_out_of_range_names_its_line(tmp_path):
    import shutil

    from mufin_lib.data.synthetic import SyntheticParams, generate
    from mufin_lib.data.xc import XCFormatError, read_xc

    root = tmp_path / "syn"
    generate(root, SyntheticParams(n_products=60, seed=2, with_images=False))
    ds = read_xc(root)
    n_test, L = ds.Y["test"].shape
    f = root / "filter_labels_test.txt"
    good = f.read_text()
    for bad, words in ((f"{n_test} 0", f"({n_test}, 0) lies outside the split's {n_test} points x {L} labels"),
                       (f"0 {L}", f"(0, {L}) lies outside"), ("3 -1", "expected `row col` (two whole numbers"),
                       ("1 2 3", "expected `row col`")):
        f.write_text(good + bad + "\n")
        with pytest.raises(XCFormatError, match=rf"filter_labels_test.txt: line {len(good.splitlines()) + 1}: .*{__import__('re').escape(words)}"):
            read_xc(root)
    shutil.rmtree(root)
