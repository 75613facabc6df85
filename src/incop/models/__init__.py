"""Models: the architecture registry (``architectures``) and pretrained starts (``pretrained``).
Imports only ``incop.base``."""
from .._moved import package_forward

__getattr__ = package_forward(__name__)  # incop.models was a module before 0.2: its names, until 0.5
