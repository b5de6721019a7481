"""JupyterLab without dirtying the repository (`make lab`): the committed notebooks under notebooks/ are saved
stripped, exactly as committed (no outputs, no execution counts, the kit's notebook metadata), so opening,
running and autosaving one leaves `git status` clean. Executed copies with outputs live under runs/<id>/,
which the same Lab browses (its root is the project root) and which this hook leaves alone.

    jupyter lab --ContentsManager.pre_save_hook=mufin_lib.lab.strip_committed_notebooks
"""
from __future__ import annotations

# What tools/nb.py writes for every committed notebook
NOTEBOOK_METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}}
KEPT_CELL_METADATA = ("tags",)  # `parameters` is a tag: papermill and the runner need it


def strip_notebook(nb: dict) -> dict:
    """Outputs, execution counts and run-time metadata out; cell ids, sources and tags kept (in place)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in KEPT_CELL_METADATA}
    nb["metadata"] = {k: dict(v) for k, v in NOTEBOOK_METADATA.items()}
    return nb


def strip_committed_notebooks(model: dict, path: str, contents_manager=None, **kwargs) -> None:
    """Jupyter server pre-save hook: strips notebooks under notebooks/ (the committed ones) before they are written."""
    if model.get("type") != "notebook" or not path.strip("/").startswith("notebooks/"):
        return
    strip_notebook(model["content"])


def lab_command(port: int | None = None, extra: list[str] | None = None) -> list[str]:
    """The `jupyter lab` command of `make lab`: the project root as Lab's root (notebooks/ and runs/ side by
    side), opened on notebooks/, with the save hook above."""
    import os
    import sys

    from .paths import PROJECT_ROOT

    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={PROJECT_ROOT}",
           "--LabApp.default_url=/lab/tree/notebooks",
           "--ContentsManager.pre_save_hook=mufin_lib.lab.strip_committed_notebooks"]
    if port is not None:
        cmd.append(f"--port={port}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers run as root; Jupyter refuses it without this
        cmd.append("--allow-root")
    return cmd + list(extra or [])


if __name__ == "__main__":
    import os
    import sys

    cmd = lab_command(extra=sys.argv[1:])
    os.execv(cmd[0], cmd)
