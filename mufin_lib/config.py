"""Typed parameters: the notebooks' `parameters` cells, presets (presets/*.yaml) and their validation.

A notebook declares its parameters as flat, typed assignments in the cell tagged `parameters`
(defaults = smoke size). The runner reads those declarations with `ast` (never by executing the
notebook), so a preset or a `-p key=value` that names an undeclared parameter is refused before
anything runs (papermill itself only warns), and every value is checked against the default's type.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .layout import BY_NUMBER
from .paths import NOTEBOOKS_DIR, PRESETS_DIR

# Injected by the runner into every notebook; notebooks declare them too, so JupyterLab works alone.
RUNNER_PARAMETERS = ("run_dir",)


class ConfigError(ValueError):
    """Bad preset, parameter or notebook selection; the message names it and the valid choices."""


@dataclass(frozen=True)
class NotebookSpec:
    path: Path
    number: str  # "01"
    name: str  # "01_dataset_curation"
    parameters: dict[str, Any] = field(default_factory=dict)  # name -> default (typed)


def parameters_cell(nb_path: Path) -> tuple[int, str]:
    nb = json.loads(Path(nb_path).read_text())
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell["source"]
            return i, "".join(src) if isinstance(src, list) else src
    raise ConfigError(f"{nb_path}: no code cell tagged 'parameters' (every notebook must declare one)")


def read_parameters(nb_path: Path) -> dict[str, Any]:
    """name -> default value of the notebook's parameters cell (flat literal assignments only)."""
    idx, src = parameters_cell(nb_path)
    try:
        tree = ast.parse(src)
    except SyntaxError as e:
        raise ConfigError(f"{nb_path}: parameters cell (cell {idx}) line {e.lineno}: {e.msg}") from e
    params: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        else:
            raise ConfigError(f"{nb_path}: parameters cell line {node.lineno}: expected `name: type = literal`")
        try:
            params[name] = ast.literal_eval(value)
        except ValueError as e:
            raise ConfigError(f"{nb_path}: parameters cell line {node.lineno}: `{name}` must be a literal") from e
    return params


def discover_notebooks(directory: Path = NOTEBOOKS_DIR) -> list[NotebookSpec]:
    specs = []
    for p in sorted(directory.glob("[0-9][0-9]_*.ipynb")):
        specs.append(NotebookSpec(p, p.name[:2], p.stem, read_parameters(p)))
    return specs


def select_notebooks(specs: list[NotebookSpec], only: str | None) -> list[NotebookSpec]:
    if not only:
        return specs
    by_key = {s.number: s for s in specs} | {s.name: s for s in specs}
    chosen = []
    for key in [k.strip() for k in only.split(",") if k.strip()]:
        key = key.removesuffix(".ipynb")
        if key not in by_key:
            valid = ", ".join(s.name for s in specs)
            raise ConfigError(f"no notebook '{key}' (--only takes numbers or names; valid: {valid})")
        if by_key[key] not in chosen:
            chosen.append(by_key[key])
    return sorted(chosen, key=lambda s: s.name)


def coerce(name: str, default: Any, value: Any, origin: str) -> Any:
    """Check `value` against the type of `default`. Strings (from -p) are parsed; YAML values are checked."""
    want = type(default)
    err = ConfigError(f"{origin}: parameter '{name}' expects {want.__name__} (default {default!r}), got {value!r}")
    if isinstance(value, str) and want is not str:
        if want is bool:
            low = value.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise err
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise err from None
    if want is bool:
        if isinstance(value, bool):
            return value
        raise err
    if want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise err
        return value
    if want is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise err from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise err
        return float(value)
    if want is str:
        if isinstance(value, (dict, list)):
            raise err
        return str(value)
    if want in (list, tuple, dict):
        if not isinstance(value, want):
            raise err
        return value
    return value


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"no preset '{name}' (valid: {', '.join(available_presets())})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with description, common and notebooks; got {type(data).__name__}")
    for key in ("common", "notebooks"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ConfigError(f"{path}: `{key}` must be a mapping (name: value), got {type(data[key]).__name__}")
    for nb, values in (data.get("notebooks") or {}).items():
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{path}: notebooks.{nb} must be a mapping (parameter: value), got {type(values).__name__}")
    unknown = set(data) - {"description", "common", "notebooks", "only"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)} (expected description, common, notebooks, only)")
    if data.get("only") is not None and not isinstance(data["only"], str):
        raise ConfigError(f"{path}: `only` must be notebook numbers as one string (e.g. \"01,02,14\"), got {data['only']!r}")
    return data


def resolve_parameters(
    specs: list[NotebookSpec],
    selected: list[NotebookSpec],
    preset: str | None,
    overrides: list[str],
) -> dict[str, dict[str, Any]]:
    """Final parameters per selected notebook: defaults < preset common < preset per-notebook < -p."""
    all_names = sorted({k for s in specs for k in s.parameters})
    final = {s.name: {} for s in selected}
    if preset:
        data = load_preset(preset)
        src = str(PRESETS_DIR / f"{preset}.yaml")
        for key, value in (data.get("common") or {}).items():
            if key not in all_names:
                raise ConfigError(f"{src}: common parameter '{key}' is declared by no notebook (valid: {', '.join(all_names)})")
            for s in selected:
                if key in s.parameters:
                    final[s.name][key] = coerce(key, s.parameters[key], value, src)
        by_key = {s.number: s for s in specs} | {s.name: s for s in specs}
        for nb_key, values in (data.get("notebooks") or {}).items():
            nb_key = str(nb_key).zfill(2) if str(nb_key).isdigit() else str(nb_key)
            if nb_key not in by_key:
                raise ConfigError(f"{src}: no notebook '{nb_key}' (valid: {', '.join(s.name for s in specs)})")
            spec = by_key[nb_key]
            for key, value in (values or {}).items():
                if key not in spec.parameters:
                    raise ConfigError(f"{src}: notebook {spec.name} has no parameter '{key}' "
                                      f"(valid: {', '.join(sorted(spec.parameters))})")
                if spec.name in final:
                    final[spec.name][key] = coerce(key, spec.parameters[key], value, src)
    return apply_overrides(specs, selected, final, overrides)


def split_override(item: str, specs: list[NotebookSpec]) -> tuple[NotebookSpec | None, str, str]:
    """`key=value` (every selected notebook declaring key) or `NN.key=value` / `<notebook name>.key=value`
    (that notebook alone): (notebook or None, key, value)."""
    if "=" not in item:
        raise ConfigError(f"-p {item!r}: expected key=value or NN.key=value")
    key, value = item.split("=", 1)
    key = key.strip()
    if "." not in key:
        return None, key, value
    nb_key, key = key.rsplit(".", 1)
    by_key = {s.number: s for s in specs} | {s.name: s for s in specs}
    if nb_key not in by_key:
        raise ConfigError(f"-p {nb_key}.{key}: no notebook '{nb_key}' (valid: {', '.join(s.name for s in specs)})")
    return by_key[nb_key], key, value


def apply_overrides(specs: list[NotebookSpec], selected: list[NotebookSpec], final: dict[str, dict[str, Any]],
                    overrides: list[str]) -> dict[str, dict[str, Any]]:
    """-p items over `final` (parameters per selected notebook), type-checked: the one parser of `-p`, for the
    runner, its resume and the torchrun entries."""
    for item in overrides:
        nb, key, value = split_override(item, specs)
        if key in RUNNER_PARAMETERS:
            raise ConfigError(f"-p {key}: set by the runner, not by a parameter")
        targets = [s for s in selected if key in s.parameters and (nb is None or s.name == nb.name)]
        if nb is not None and nb.name not in {s.name for s in selected}:
            raise ConfigError(f"-p {item.split('=', 1)[0]}: notebook {nb.name} is not selected "
                              f"(selected: {', '.join(s.name for s in selected)})")
        if not targets:
            scope = selected if nb is None else [nb]
            names = sorted({k for s in scope for k in s.parameters if k not in RUNNER_PARAMETERS})
            where = "no selected notebook declares" if nb is None else f"notebook {nb.name} does not declare"
            raise ConfigError(f"-p {item.split('=', 1)[0]}: {where} '{key}' (valid parameters: {', '.join(names)})")
        for s in targets:
            final[s.name][key] = coerce(key, s.parameters[key], value, f"-p {item.split('=', 1)[0]}")
    return final


# ---- one source of defaults: each notebook's parameters are the fields of its stage's Params dataclass ----

def ranged(default, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False):
    """A Params field whose value must lie in [lo, hi] (open ends with lo_open / hi_open); checked by the runner
    before any notebook starts."""
    return field(default=default, metadata={"range": (lo, hi, lo_open, hi_open)})


def choice(default: str, *choices: str):
    """A Params field that takes one of `choices` (the default among them)."""
    return field(default=default, metadata={"choices": (default, *choices)})


def valid(default, check, rule: str):
    """A Params field whose value must satisfy `check(value)` (`rule` says what is expected)."""
    return field(default=default, metadata={"valid": (check, rule)})


def check_value(name: str, value: Any, meta, origin: str) -> None:
    import math

    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{origin}: parameter '{name}' must be a finite number, got {value!r}")
    if "valid" in meta and not meta["valid"][0](value):
        raise ConfigError(f"{origin}: parameter '{name}' must be {meta['valid'][1]}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{origin}: parameter '{name}' must be one of {', '.join(map(repr, meta['choices']))}, got {value!r}")
    if "range" in meta:
        lo, hi, lo_open, hi_open = meta["range"]
        bad = (lo is not None and (value < lo or (lo_open and value == lo))) or \
              (hi is not None and (value > hi or (hi_open and value == hi)))
        if bad:
            span = f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{')' if hi_open else ']'}"
            raise ConfigError(f"{origin}: parameter '{name}' must be in {span}, got {value!r}")


def check_parameters(final: dict[str, dict[str, Any]], params_class, origin: str = "parameters") -> None:
    """Every value against its Params field's range or choices (notebook name -> parameters; `params_class(number)`
    gives a stage's Params, mufin_lib.stages.params_class), so that a value such as test_fraction=1.5 is refused
    before any kernel starts, naming the parameter and the valid range."""
    from dataclasses import fields

    for nb_name, values in final.items():
        number = nb_name[:2]
        if number not in BY_NUMBER:
            continue
        meta = {f.name: f.metadata for f in fields(params_class(number))}
        for name, value in values.items():
            if name in meta:
                check_value(name, value, meta[name], f"{origin} of {nb_name}")


def params_from(cls, values: dict[str, Any]):
    """The stage's Params from a notebook's parameter values (e.g. its globals()): the fields it declares are
    taken from `values`, the others keep the dataclass's defaults."""
    from dataclasses import fields

    return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
