"""Data: the dataset registry and readers of the standard formats, with the deterministic split
(``datasets``), your own arrays and image folders (``own_data``), ``--download`` (``downloads``),
batching (``batches``), checks of a user's data (``checks``) and the CIFAR reader that runs no
code (``safe_pickle``). Imports only ``incop.base``."""
from .._moved import package_forward
from . import own_data  # noqa: F401  (registers the npz and folder datasets)
from .datasets import DATASETS, load_raw, load_splits  # noqa: F401  (documented entry points)

__getattr__ = package_forward(__name__)  # incop.data was a module before 0.2: its names, until 0.5
