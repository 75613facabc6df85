"""A run's settings: the typed dataclasses every flag comes from, and their checks (``schema``),
what makes a run the run it is (``identity``: run id, checksum, fingerprints), the methods
(``methods``), ``--config`` files (``files``) and the flags generated from the schema
(``flags``). Imports the packages below it: base, data, models, pruning, stopping."""
from .._moved import package_forward

__getattr__ = package_forward(__name__)  # incop.config was a module before 0.2: its names, until 0.5
