"""incop's packages import one way: each package may import only those below it (and itself);
the Python API and the command line sit on top. An import against this order fails here, with
the file and the line. The engine writes no file and draws nothing."""
import ast
import re
from pathlib import Path

import pytest

from conftest import ROOT


SRC = ROOT / "src" / "incop"

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


# what writes a file, called as a method or a function: torch.save, np.save, Masks.save,
# fig.savefig, Path.write_text, json.dump, pickle.dump, Path.mkdir, os.replace, ...
WRITERS = {"save", "savez", "savez_compressed", "savefig", "tofile", "write_text", "write_bytes",
           "dump", "touch", "mkdir", "makedirs", "rename", "renames", "unlink", "rmdir",
           "removedirs", "symlink_to", "hardlink_to", "link_to", "truncate", "ftruncate",
           "mkfifo", "mknod"}
OS_WRITERS = {"replace", "remove", "link", "symlink", "open", "write"}  # os.<name> only: str.replace
FILE_WRITERS = {"atomic_write", "atomic_write_file", "atomic_write_text", "open_in_run", "own_folder"}
WRITE_MODE = re.compile(r"[rbt]*[wax+][rwabxt+]*")


def _opens_to_write(call: ast.Call) -> bool:
    """open(path, mode), Path.open(mode), gzip.open(path, mode), os.fdopen(fd, mode): a mode that
    writes (w, a, x or +), or one not written out (it might)."""
    name = call.func.id if isinstance(call.func, ast.Name) else \
        call.func.attr if isinstance(call.func, ast.Attribute) else ""
    if name not in ("open", "fdopen"):
        return False
    mode = next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode is None:
        method = isinstance(call.func, ast.Attribute) and not (
            isinstance(call.func.value, ast.Name) and call.func.value.id in ("io", "gzip", "bz2",
                                                                            "lzma", "codecs"))
        position = 0 if method and name == "open" else 1  # Path.open(mode); open(path, mode)
        if len(call.args) <= position:
            return False  # the default mode reads
        mode = call.args[position]
    return not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)
                and not WRITE_MODE.fullmatch(mode.value))


def _file_writes(tree: ast.AST):
    """(line, what) for every call in ``tree`` that writes, moves or removes a file."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "files":
            for alias in node.names:
                if alias.name in FILE_WRITERS:
                    yield node.lineno, f"imports {alias.name}"
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if _opens_to_write(node):
            yield node.lineno, "opens a file to write"
        elif isinstance(func, ast.Attribute) and func.attr in WRITERS:
            yield node.lineno, f".{func.attr}()"
        elif isinstance(func, ast.Attribute) and func.attr in OS_WRITERS \
                and isinstance(func.value, ast.Name) and func.value.id == "os":
            yield node.lineno, f"os.{func.attr}()"
        elif isinstance(func, ast.Name) and func.id in FILE_WRITERS | WRITERS:
            yield node.lineno, f"{func.id}()"
        elif isinstance(func, ast.Name) and func.id == "print" and any(
                k.arg == "file" and not (isinstance(k.value, ast.Attribute)
                                         and k.value.attr in ("stdout", "stderr"))
                for k in node.keywords):
            yield node.lineno, "print(file=...)"


def test_the_engine_writes_no_file_and_draws_nothing():
    """The loop tells observers; files, plots and trackers are theirs (issue 26): the engine's
    modules import nothing that writes or draws, and call nothing that writes, moves or removes
    a file (open to write, torch.save, np.save, .write_text, .write_bytes, json.dump, a move or
    a removal, incop's own atomic writers)."""
    banned = ("matplotlib", "json", "csv", "tensorboard", "wandb", "tempfile", "shutil")
    writes = []
    for path in (SRC / "engine").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not any(n.split(".")[0] in banned for n in names), (path.name, names)
        writes += [f"{path.relative_to(SRC)}:{line}: {what}" for line, what in _file_writes(tree)]
    assert writes == []


def test_the_check_catches_a_file_written_in_the_engine():
    """Each way of writing the purity test looks for, in a module of the engine's, is caught."""
    probe = """
import os, pickle
from pathlib import Path
from ..base.files import atomic_write_text
def f(model, path, x):
    open(path, "w").write("x")
    with open(path, mode="ab") as out:
        out.write(b"x")
    Path(path).open("w")
    Path(path).write_text("x")
    torch.save(model.state_dict(), path)
    np.save(path, x)
    pickle.dump(x, open(path, "wb"))
    os.replace(path, path)
    Path(path).unlink()
    print("x", file=open(path, "a"))
    open(path).read()
    Path(path).open().read()
"""
    found = [what for _, what in sorted(_file_writes(ast.parse(probe)))]
    assert found == ["imports atomic_write_text", "opens a file to write", "opens a file to write",
                     "opens a file to write", ".write_text()", ".save()", ".save()", ".dump()",
                     "opens a file to write", "os.replace()", ".unlink()", "opens a file to write",
                     "print(file=...)"], found


def test_no_observer_hides_an_event_behind_an_attribute():
    """An observer's field named like an event (records.finished once) would swallow it."""
    import dataclasses

    from incop.engine.events import _EVENTS
    from incop.engine.records import RunRecords

    assert not {f.name for f in dataclasses.fields(RunRecords)} & _EVENTS
