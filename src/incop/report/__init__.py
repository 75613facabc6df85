"""Reports of finished runs: the side-by-side comparison of ``incop report`` (``comparison``) and
the figures (``figures``). Imports ``incop.runs`` and everything below it."""
from .._moved import package_forward

__getattr__ = package_forward(__name__)  # incop.report was a module before 0.2: its names, until 0.5
