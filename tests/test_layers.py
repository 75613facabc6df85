"""Issue 26: incop's packages import one way. Each package may import only those below it (and
itself); the Python API and the command line sit on top. An import against this order fails
here, with the file and the line, whether it is at the top of a module or inside a function."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "incop"

# from the ground up; a package may import its own modules and those of lower layers
LAYERS = [
    {"base"},
    {"pruning", "data", "models"},
    {"stopping"},
    {"config"},
    {"engine"},
    {"runs"},
    {"track", "report"},
    {"deploy"},
    {"launch"},
    {"api"},
    {"cli", "__main__", "__init__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
LEGACY = {"_moved"}  # the module paths from before 0.2, forwarded until 0.5; imports nothing


def _part(module: str) -> str:
    """incop.engine.imp -> engine; incop.api -> api; incop -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    """(line, imported module) for every import of incop's own modules in ``path``."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x: x a module, or a name (__version__)
                    for alias in node.names:
                        folder = SRC.parent.joinpath(*target.split("."))
                        if (folder / f"{alias.name}.py").exists() or (folder / alias.name).is_dir():
                            yield node.lineno, f"{target}.{alias.name}"
                    continue
            else:
                target = node.module or ""
            if target == "incop" or target.startswith("incop."):
                yield node.lineno, target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("incop."):
                    yield node.lineno, alias.name


def _violations():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        me = _part(".".join(rel.parts))
        if me in LEGACY:
            continue
        for line, target in _imports(path):
            other = _part(target)
            if other in LEGACY:
                if path.name != "__init__.py":
                    found.append(f"{path.relative_to(SRC)}:{line} imports the legacy {target}")
                continue
            if other == "__init__" and target == "incop":
                continue  # from .. import __version__
            if LEVEL[other] > LEVEL[me]:
                found.append(f"{path.relative_to(SRC)}:{line} ({me}) imports {target} ({other}), "
                             f"a layer above it")
    return found


def test_every_file_belongs_to_a_layer():
    parts = {_part(".".join(p.relative_to(SRC.parent).with_suffix("").parts))
             for p in SRC.rglob("*.py")}
    assert parts - set(LEVEL) - LEGACY == set()


def test_imports_run_one_way():
    assert _violations() == []


def test_the_check_catches_an_import_against_the_order(tmp_path, monkeypatch):
    bad = SRC / "base" / "_layer_probe.py"
    bad.write_text("def f():\n    from ..engine.imp import IMPExperiment\n")
    try:
        found = _violations()
    finally:
        bad.unlink()
    assert any("base/_layer_probe.py:2" in v and "engine" in v for v in found)


def test_no_import_circles():
    """No two modules import each other, directly or through others (inside a package too)."""
    graph = {}
    for path in SRC.rglob("*.py"):
        me = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        graph[me] = {t for _, t in _imports(path) if not t.endswith("_moved")}
    modules = {m.removesuffix(".__init__") for m in graph}
    graph = {m.removesuffix(".__init__"): {t for t in ts if t in modules} for m, ts in graph.items()}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if state.get(nxt) == "open":
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert {"incop.launch.jobs", "incop.runs.store", "incop.engine.imp"} <= set(graph)


def test_the_engine_writes_no_file_and_draws_nothing():
    """The loop tells observers; files, plots and trackers are theirs (issue 26)."""
    banned = ("matplotlib", "json", "csv", "tensorboard", "wandb", "tempfile", "shutil")
    for path in (SRC / "engine").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not any(n.split(".")[0] in banned for n in names), (path.name, names)


def test_no_observer_hides_an_event_behind_an_attribute():
    """An observer's field named like an event (records.finished once) would swallow it."""
    import dataclasses

    from incop.engine.events import _EVENTS
    from incop.engine.records import RunRecords

    assert not {f.name for f in dataclasses.fields(RunRecords)} & _EVENTS
