"""Models: the architecture registry (``architectures``) and pretrained starts (``pretrained``).
Imports only ``incop.base``."""
from .._moved import package_forward

__getattr__ = package_forward(__name__)  # incop.models was a module in 0.1: its names, one release
