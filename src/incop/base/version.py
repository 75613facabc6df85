"""incop's version, on the ground floor so that any module may name it without importing the
package (whose ``__init__`` imports nearly everything). The one place it is written: pyproject.toml
reads it (``[tool.setuptools.dynamic]``), so ``incop --version``, ``incop.__version__``, the
installed package's metadata and every run's config.json say the same; CHANGELOG.md's newest
heading names it too (tests/cli/test_version.py)."""
__version__ = "0.4.0"
