"""The stages: one module per run folder (mufin_lib.layout.STAGES), each with its Params (the notebook's defaults),
its Result (whose summary it writes as metrics.json) and its stage function `stage(run, params)`. They orchestrate
the method modules on an open run; the runner, prediction and the CLI stand above them."""
from __future__ import annotations

import importlib

from ..layout import BY_NUMBER


def params_class(number: str):
    """The Params dataclass of stage `number` (imported on use: a stage module imports torch)."""
    s = BY_NUMBER[number]
    return getattr(importlib.import_module(s.module), s.params)
