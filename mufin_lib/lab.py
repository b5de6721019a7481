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
