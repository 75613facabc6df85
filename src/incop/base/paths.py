"""Paths as people type them: ``~`` and ``$VARS`` expanded wherever incop takes a path (flags,
config files, the Python API), since a shell leaves ``--data_dir=~/data`` and quoted values
alone. An unset variable is refused, never left in the path as text."""
from __future__ import annotations

import os
import re

from .errors import UsageError

_VARIABLE = re.compile(r"\$(\w+)|\$\{([^}]*)\}")


def expand_path(text: str, what: str) -> str:
    """``text`` with ``~``, ``~user`` and ``$NAME`` / ``${NAME}`` expanded; ``what`` names the
    setting in the one-line refusal of an unset variable."""
    text = str(text)
    for match in _VARIABLE.finditer(text):
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise UsageError(f"{what} {text}: the environment variable {name} is not set; set it "
                             f"or write the path out")
    return os.path.expanduser(os.path.expandvars(text))
