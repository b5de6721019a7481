"""The progress bar every long loop uses: widgets in JupyterLab (ipywidgets), plain text when the runner
executes a notebook (MUFIN_PROGRESS=text, set by `mufin run`), whose console shows it as it goes."""
import os

if os.environ.get("MUFIN_PROGRESS") == "text":
    from tqdm.std import tqdm
else:
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
