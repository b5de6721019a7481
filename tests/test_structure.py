"""The library's floors, drawn from its own imports (ast: every import, including those inside functions):
methods at the bottom know nothing of runs, stages or prediction; the stages orchestrate them; the runner,
prediction and the CLI stand on top. A change that runs an import back up fails here."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "mufin_lib"
METHODS = ("encoders", "bags", "finetune", "model", "module1", "ranker", "retrieval", "fusion", "baselines",
           "metrics", "training", "layout", "predictor", "data", "pipeline", "variants", "outfits")
UPPER = ("stages", "artifacts", "predict", "run", "cli", "reuse")


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The mufin_lib modules a file imports (absolute or relative, at any depth of the file)."""
    me = module_name(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mufin_lib")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("mufin_lib"):
                continue
            for a in node.names:  # `from . import x` imports the module x when there is one
                sub = f"{mod}.{a.name}"
                out.add(sub if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                        or (PKG.parent / sub.replace(".", "/")).is_dir() else mod)
    return out - {me}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PKG.rglob("*.py")}


def top(mod: str) -> str:
    """mufin_lib.stages.module1 -> stages; mufin_lib.module1 -> module1."""
    return mod.split(".")[1] if mod.count(".") else mod


def test_the_import_graph_is_read():
    g = graph()
    assert "mufin_lib.artifacts" in g["mufin_lib.stages.module1"] or "mufin_lib.artifacts" in g["mufin_lib.stages.torchrun"]
    assert "mufin_lib.stages.evaluate" in g["mufin_lib.predict"]  # an import inside a function counts too
    assert "mufin_lib.stages.evaluate" in g["mufin_lib.cli"]


def test_no_import_cycle():
    g = graph()
    state, cycle = {}, []

    def visit(n, path):
        state[n] = "open"
        for m in sorted(g.get(n, ())):
            if m not in g:
                continue
            if state.get(m) == "open":
                cycle.append(path[path.index(m):] + [m] if m in path else [n, m])
            elif m not in state:
                visit(m, path + [m])
        state[n] = "done"

    for n in sorted(g):
        if n not in state:
            visit(n, [n])
    assert not cycle, f"import cycles: {cycle}"


def test_methods_import_no_stage_run_or_prediction():
    g = graph()
    bad = {m: sorted(i for i in deps if top(i) in UPPER)
           for m, deps in g.items() if top(m) in METHODS}
    assert not {m: v for m, v in bad.items() if v}, bad


def test_stages_import_neither_predict_nor_cli_nor_the_runner():
    g = graph()
    bad = {m: sorted(i for i in deps if top(i) in ("predict", "cli", "run"))
           for m, deps in g.items() if top(m) == "stages"}
    assert not {m: v for m, v in bad.items() if v}, bad


def test_artifacts_stands_below_the_stages():
    assert not {i for i in graph()["mufin_lib.artifacts"] if top(i) in UPPER}
