"""Pruning: masks over a model's weights (``masks``), the rules that prune them and their
registry, with the PQ index and exact counts (``rules``), compact files of masks and sparse
models (``sparse_files``), and ``torch.nn.utils.prune`` adapters (``torch_prune``). Imports only
``incop.base``."""
from .._moved import package_forward

__getattr__ = package_forward(__name__)  # incop.pruning was a module before 0.2: its names, until 0.5
