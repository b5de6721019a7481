"""A trained MUFIN carried as one folder: `mufin export` writes it, `mufin predict --model` (Predictor.load) predicts
from it alone, to the last digit of `mufin predict --run`."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

# Run `mufin` with an audit hook that refuses to open any file under the given folders: a model folder that still
# needed the run, the cache or the dataset would fail here, not pass by reading them quietly.
GUARDED = """
import sys
forbidden = [p for p in sys.argv[1].split("|") if p]
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)) or event == "open" and hasattr(args[0], "__fspath__"):
        import os
        path = os.path.realpath(os.fsdecode(args[0]))
        if any(path == f or path.startswith(f + os.sep) for f in forbidden):
            raise PermissionError(f"model folder test: opened {path}")
sys.addaudithook(hook)
from mufin_lib.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _inputs(tmp_path: Path) -> Path:
    img = tmp_path / "kettle.png"
    Image.new("RGB", (90, 60), (30, 150, 150)).save(img)
    f = tmp_path / "new.jsonl"
    f.write_text("\n".join([
        json.dumps({"id": "a", "title": "Oak Field Nova kettle", "images": [str(img)]}),
        json.dumps({"id": "b", "title": "Pine Brook Luna mug", "images": []}),
        json.dumps({"id": "c", "title": "Linen stripe cushion cover"}),
        "{not json",
    ]) + "\n")
    return f


@pytest.mark.smoke
def test_model_folder_predicts_alone_as_the_run_does(smoke_run, tmp_path):
    run_dir, env = smoke_run
    info = json.loads((run_dir / "dataset" / "dataset.json").read_text())
    inp = _inputs(tmp_path)

    def mufin(*args, forbid=()):
        cmd = [sys.executable, "-c", GUARDED, "|".join(str(Path(p).resolve()) for p in forbid), *map(str, args)]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    r = mufin("predict", "--run", run_dir, "--input", inp, "--output", tmp_path / "by_run.jsonl", "--top-k", "7")
    assert r.returncode == 0, r.stderr[-3000:]
    r = mufin("export", run_dir, tmp_path / "exported")
    assert r.returncode == 0, r.stderr[-3000:]
    carried = tmp_path / "elsewhere" / "model"
    shutil.copytree(tmp_path / "exported", carried)
    shutil.rmtree(tmp_path / "exported")
    # the run, the whole runs/ and cache/ folders, and the dataset's root may not be opened
    forbid = [run_dir, run_dir.parent, Path(env.get("MUFIN_CACHE_DIR", ROOT / "cache")), info["root"], ROOT / "runs"]
    r = mufin("predict", "--model", carried, "--input", inp, "--output", tmp_path / "by_model.jsonl", "--top-k", "7",
              forbid=forbid)
    assert r.returncode == 0, r.stderr[-3000:]
    by_run = (tmp_path / "by_run.jsonl").read_text().splitlines()
    by_model = (tmp_path / "by_model.jsonl").read_text().splitlines()
    assert by_model == by_run  # the same labels, titles and scores, to the last digit
    recs = [json.loads(l) for l in by_run]
    assert sum(len(o["recommendations"]) == 7 for o in recs) == 3 and any("not JSON" in o.get("error", "") for o in recs)
    # the guard itself works: the same model folder, forbidden, cannot be read
    r = mufin("predict", "--model", carried, "--input", inp, "--output", tmp_path / "x.jsonl", forbid=[carried])
    assert r.returncode != 0 and "model folder test: opened" in r.stderr


@pytest.mark.smoke
def test_model_folder_carries_typed_fusion_and_refuses_a_partial_folder(smoke_run, tmp_path):
    from mufin_lib.artifacts import open_run
    from mufin_lib.fusion import FusionParams
    from mufin_lib.predictor import Predictor
    from mufin_lib.stages.evaluate import export

    run_dir, _ = smoke_run
    run = open_run(run_dir)
    folder = export(run, tmp_path / "m")
    fusion = FusionParams.load(folder)
    rec = run.alpha_record
    assert fusion == run.fusion and fusion.paper_alpha == rec["alpha"]
    assert fusion.alpha == (rec["terms"] or rec)["alpha"]  # what prediction uses: the alpha tuned with the terms
    assert fusion.vote_weight == rec["terms"]["vote_weight"] and fusion.prior_weight == rec["terms"]["prior_weight"]
    (folder / "predictor.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete model folder"):
        Predictor.load(folder)
