"""One version: the command line, the package, its installed metadata and the changelog say the
same; and whatever the code or the docs promise to keep "until" a release names a release still
to come."""
import importlib
import importlib.metadata
import re
import sys
import warnings
from pathlib import Path

import pytest

from conftest import ROOT

import incop
from incop import _moved
from incop.base.version import __version__
from incop.cli import main


# "until 0.5", "until incop 0.5", "goes in incop 0.5", "go in 0.5", "removed in 0.5"
PROMISE = re.compile(r"\b(?:until|goes in|go in|removed in|removes? (?:it|them) in)\s+"
                     r"(?:incop\s+)?(\d+)\.(\d+)", re.I)
SINCE = re.compile(r"\bsince (?:incop )?(\d+)\.(\d+)\b", re.I)


def _release(version: str):
    return tuple(int(x) for x in version.split(".")[:2])


def _texts():
    """The docs, the README, the changelog and the source: (path, text)."""
    paths = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "src").rglob("*.py"))]
    return [(p.relative_to(ROOT), p.read_text()) for p in paths if p.is_file()]


def test_the_command_line_says_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"incop {__version__}"
    assert incop.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__), __version__


def test_the_installed_metadata_says_the_package_version():
    assert importlib.metadata.version("incop") == incop.__version__, (
        "the installed metadata is stale: reinstall (make install, or "
        "pip install -e . --no-deps)")


def test_pyproject_reads_the_version_from_the_package():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "a second copy of the version in pyproject.toml"
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    module, _, name = attr.rpartition(".")
    assert getattr(importlib.import_module(module), name) == incop.__version__


def test_the_changelog_leads_with_this_version():
    headings = re.findall(r"^## (\d+\.\d+\.\d+)\b", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings and headings[0] == incop.__version__, headings[:1]
    releases = [tuple(map(int, h.split("."))) for h in headings]
    assert releases == sorted(releases, reverse=True) and len(set(releases)) == len(releases)


def test_the_old_module_paths_warn_of_a_release_still_to_come():
    sys.modules.pop("incop.speed", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.import_module("incop.speed").SparseLinear
    (warning,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    found = re.search(r"goes in incop (\d+\.\d+)", str(warning.message))
    assert found, str(warning.message)
    assert _release(found.group(1)) > _release(incop.__version__), (
        f"the old module paths were to go in {found.group(1)}, and this is "
        f"{incop.__version__}: remove incop._moved or move the date")
    assert found.group(1) == getattr(_moved, "REMOVED_IN", None)  # one place says when


def test_every_promise_names_a_release_still_to_come():
    promises, stale = [], []
    for path, text in _texts():
        for m in PROMISE.finditer(text):
            promises.append(path)
            if (int(m.group(1)), int(m.group(2))) <= _release(incop.__version__):
                line = text.count("\n", 0, m.start()) + 1
                stale.append(f"{path}:{line}: {m.group(0)!r}")
    assert stale == [], f"promises already due in {incop.__version__}"
    # the forwards' promise is made in the code and in the docs at least
    assert {Path("src/incop/_moved.py"), Path("docs/architecture.md")} <= set(promises)


def test_nothing_is_said_to_exist_since_a_release_not_yet_made():
    early = []
    for path, text in _texts():
        for m in SINCE.finditer(text):
            if (int(m.group(1)), int(m.group(2))) > _release(incop.__version__):
                early.append(f"{path}: {m.group(0)!r}")
    assert early == []
