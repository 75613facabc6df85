"""The launcher registry: ``incop sweep --launcher NAME``. A new engine is one ``Launcher``
subclass (``incop.jobs``) and one line here."""
from __future__ import annotations

from typing import Callable

from .jobs import Launcher
from ..base.registry import Registry
from .slurm import SlurmLauncher
from .local import LocalLauncher

LAUNCHERS: Registry[Callable[..., Launcher]] = Registry("launcher")
LAUNCHERS.add("local", LocalLauncher)
LAUNCHERS.add("slurm", SlurmLauncher)
