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
# Lab's defaults that a person reading the kit's notebooks would rather not have: the "Jupyter news" prompt over the
# bottom right of every page, and update checks (this machine is often offline)
LAB_OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def strip_notebook(nb: dict) -> dict:
    """Outputs, execution counts and run-time metadata out; cell ids, sources and tags kept (in place)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in KEPT_CELL_METADATA}
    nb["metadata"] = {k: dict(v) for k, v in NOTEBOOK_METADATA.items()}
    return nb


def is_run_record(path: str) -> bool:
    """An executed notebook under runs/<id>/notebooks/: the record of a run, which Lab shows but never rewrites."""
    parts = path.strip("/").split("/")
    return len(parts) >= 4 and parts[0] == "runs" and parts[2] == "notebooks" and parts[-1].endswith(".ipynb")


def is_committed(path: str) -> bool:
    return path.strip("/").startswith("notebooks/") and path.endswith(".ipynb")


def kernel_metadata() -> dict:
    """The notebook metadata Lab itself writes once this environment's python3 kernel starts (its kernelspec and its
    language_info, Python's version included). Handing Lab a committed notebook with exactly these keeps it from
    marking the notebook modified the moment it opens; the save hook strips them again."""
    import sys

    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    info = dict(IPythonKernel.language_info)
    info["version"] = sys.version.split()[0]
    return {"kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": "python3"},
            "language_info": info}


def contents_manager_class():
    """Jupyter's file contents manager, except that a run's executed notebooks are served read-only (so Lab opens
    them read-only and its autosave leaves them alone) and a save over one is refused: a run changes by re-running
    it (`mufin run --resume`), not by editing its record. Files that are read-only on disk already are so for most
    users; root, as in containers, may write anything, hence this."""
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from tornado.web import HTTPError

    class KitContentsManager(AsyncLargeFileManager):
        async def get(self, path, content=True, type=None, format=None, **kwargs):
            model = await super().get(path, content=content, type=type, format=format, **kwargs)
            if is_run_record(path):
                model["writable"] = False
            if (is_run_record(path) or is_committed(path)) and model.get("type") == "notebook" and model.get("content"):
                model["content"]["metadata"].update(kernel_metadata())  # served, never written: see kernel_metadata
            return model

        async def save(self, model, path=""):
            if is_run_record(path):
                raise HTTPError(403, f"{path} is a run's record: re-run the notebook with mufin run --resume instead")
            return await super().save(model, path)

    return KitContentsManager


def strip_committed_notebooks(model: dict, path: str, contents_manager=None, **kwargs) -> None:
    """Jupyter server pre-save hook: strips notebooks under notebooks/ (the committed ones) before they are written."""
    if model.get("type") != "notebook" or not path.strip("/").startswith("notebooks/"):
        return
    strip_notebook(model["content"])


def install_overrides(settings_dir=None):
    """LAB_OVERRIDES merged into Lab's overrides.json of this environment (share/jupyter/lab/settings): the
    environment's, never the repository's or the user's own settings."""
    import json
    import sys
    from pathlib import Path

    d = Path(settings_dir) if settings_dir else Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"
    f = d / "overrides.json"
    current = json.loads(f.read_text()) if f.exists() else {}
    for plugin, values in LAB_OVERRIDES.items():
        current.setdefault(plugin, {}).update(values)
    d.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(current, indent=2) + "\n")
    return f


def lab_command(port: int | None = None, extra: list[str] | None = None) -> list[str]:
    """The `jupyter lab` command of `make lab`: the project root as Lab's root (notebooks/ and runs/ side by
    side), opened on notebooks/, with the save hook above."""
    import os
    import sys

    from .paths import PROJECT_ROOT

    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={PROJECT_ROOT}",
           "--LabApp.default_url=/lab/tree/notebooks",
           "--ServerApp.contents_manager_class=mufin_lib.lab.KitContentsManager",
           "--ContentsManager.pre_save_hook=mufin_lib.lab.strip_committed_notebooks"]
    if port is not None:
        cmd.append(f"--port={port}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers run as root; Jupyter refuses it without this
        cmd.append("--allow-root")
    return cmd + list(extra or [])


def __getattr__(name):  # `mufin_lib.lab.KitContentsManager` for Jupyter's config, built on first use
    if name == "KitContentsManager":
        return contents_manager_class()
    raise AttributeError(name)


if __name__ == "__main__":
    import os
    import sys

    install_overrides()
    cmd = lab_command(extra=sys.argv[1:])
    os.execv(cmd[0], cmd)
