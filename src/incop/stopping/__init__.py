"""Stopping a round: the flows between layers (``flows``) and the criteria the training loop asks
at every check, with their registry and default thresholds (``criteria``). Imports ``incop.base``,
``incop.data`` and ``incop.pruning``."""
from .._moved import package_forward

__getattr__ = package_forward(__name__)  # incop.stopping was a module before 0.2: its names, until 0.5
