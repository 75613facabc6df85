"""The module paths incop had before its code moved into packages in 0.2 (``incop.imp``,
``incop.speed``, ``incop.config`` as one module, ...), kept as thin forwards to where the code
lives now, so that imports written for them and pickles of fast sparse models (which name
``incop.speed.SparseLinear``) still load. Each old path warns, with its new home. They stay until
incop 0.5 (``REMOVED_IN``), which removes this file; nothing in incop imports through it."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Callable, Dict, Tuple

REMOVED_IN = "0.5"  # the release without the old paths (docs/architecture.md says the same)

# old module -> the modules its names live in now (the first is its new home)
MODULES: Dict[str, Tuple[str, ...]] = {
    "incop.errors": ('incop.base.errors',),
    "incop.registry": ('incop.base.registry', 'incop.base.errors'),
    "incop.masks": ('incop.pruning.masks', 'incop.base.errors', 'incop.pruning.sparse_files'),
    "incop.sparse_io": ('incop.pruning.sparse_files', 'incop.base.errors'),
    "incop.torch_prune": ('incop.pruning.torch_prune', 'incop.pruning.masks', 'incop.pruning.rules'),
    "incop.own_data": ('incop.data.own_data', 'incop.base.machine', 'incop.data.datasets', 'incop.base.errors', 'incop.data.checks'),
    "incop.downloads": ('incop.data.downloads', 'incop.base.errors'),
    "incop.batches": ('incop.data.batches', 'incop.base.errors'),
    "incop.safe_pickle": ('incop.data.safe_pickle', 'incop.base.errors'),
    "incop.pretrained": ('incop.models.pretrained', 'incop.base.errors'),
    "incop.flows": ('incop.stopping.flows', 'incop.data.batches', 'incop.base.errors', 'incop.pruning.masks'),
    "incop.round_criteria": ('incop.stopping.flows', 'incop.pruning.masks', 'incop.stopping.criteria'),
    "incop.methods": ('incop.config.methods', 'incop.pruning.rules', 'incop.base.registry', 'incop.stopping.criteria'),
    "incop.config_files": ('incop.config.files', 'incop.config.schema', 'incop.base.errors'),
    "incop.results": ('incop.runs.directory', 'incop.base.errors', 'incop.base.files', 'incop.base.text', 'incop.engine.tables'),
    "incop.records": ('incop.runs.store', 'incop.engine.records', 'incop.config.schema', 'incop.config.identity', 'incop.base.errors', 'incop.pruning.masks', 'incop.runs.directory', 'incop.engine.tables', 'incop.runs.layout', 'incop.pruning.sparse_files'),
    "incop.rundata": ('incop.runs.reading', 'incop.config.identity', 'incop.base.errors', 'incop.base.files'),
    "incop.run_files": ('incop.runs.layout', 'incop.base.errors', 'incop.pruning.sparse_files'),
    "incop.imp": ('incop.engine.imp', 'incop.engine.runtime', 'incop.engine.precision', 'incop.config.schema', 'incop.base.timepoints', 'incop.data.batches', 'incop.data.datasets', 'incop.base.errors', 'incop.engine.failures', 'incop.stopping.flows', 'incop.pruning.masks', 'incop.engine.trial_inputs', 'incop.engine.learned', 'incop.pruning.rules', 'incop.config.methods', 'incop.runs.store', 'incop.engine.records', 'incop.runs.directory', 'incop.base.text', 'incop.engine.tables', 'incop.engine.runtime', 'incop.engine.schedules', 'incop.stopping.criteria', 'incop.track.tensorboard', 'incop.engine.training'),
    "incop.training": ('incop.engine.training', 'incop.engine.precision', 'incop.base.timepoints', 'incop.data.batches', 'incop.base.errors', 'incop.pruning.masks', 'incop.engine.schedules', 'incop.stopping.criteria'),
    "incop.schedules": ('incop.engine.schedules', 'incop.base.errors', 'incop.base.registry'),
    "incop.compute": ('incop.engine.precision', 'incop.base.errors', 'incop.base.machine'),
    "incop.runtime": ('incop.engine.runtime', 'incop.base.errors'),
    "incop.inputs": ('incop.engine.trial_inputs', 'incop.data.batches', 'incop.data.datasets', 'incop.base.errors', 'incop.models.architectures', 'incop.models.pretrained', 'incop.config.identity', 'incop.data.checks'),
    "incop.learned": ('incop.engine.learned', 'incop.data.batches', 'incop.config.schema'),
    "incop.failures": ('incop.engine.failures', 'incop.data.batches', 'incop.base.errors'),
    "incop.tracking": ('incop.track.tensorboard', 'incop.base.errors'),
    "incop.plots": ('incop.report.figures', 'incop.runs.reading', 'incop.base.files', 'incop.base.text'),
    "incop.export": ('incop.deploy.export', 'incop.base.errors', 'incop.pruning.masks', 'incop.runs.layout', 'incop.runs.reading', 'incop.pruning.sparse_files', 'incop.pruning.torch_prune'),
    "incop.speed": ('incop.deploy.sparse_inference', 'incop.pruning.masks'),
    "incop.speed_run": ('incop.deploy.timing', 'incop.base.machine', 'incop.deploy.csr_tiled', 'incop.base.errors', 'incop.deploy.export', 'incop.pruning.masks', 'incop.runs.directory', 'incop.base.text', 'incop.base.files', 'incop.runs.layout', 'incop.deploy.sparse_inference', 'incop.runs.reading'),
    "incop.csr_tiled": ('incop.deploy.csr_tiled',),
    "incop.jobs": ('incop.launch.jobs', 'incop.config.schema', 'incop.base.errors', 'incop.base.files', 'incop.runs.directory', 'incop.runs.reading'),
    "incop.sweep": ('incop.launch.local', 'incop.config.schema', 'incop.base.errors', 'incop.launch.jobs', 'incop.runs.directory', 'incop.launch.grid'),
    "incop.slurm": ('incop.launch.slurm', 'incop.base.errors', 'incop.runs.directory', 'incop.launch.jobs'),
    "incop.launchers": ('incop.launch.launchers', 'incop.launch.jobs', 'incop.base.registry', 'incop.launch.slurm', 'incop.launch.local'),
}

# old modules whose path is now a package: the package forwards the old names
PACKAGES: Dict[str, Tuple[str, ...]] = {
    "incop.pruning": ('incop.pruning.rules', 'incop.base.errors', 'incop.pruning.masks'),
    "incop.data": ('incop.data.datasets', 'incop.data.batches', 'incop.data.downloads', 'incop.base.errors', 'incop.base.registry', 'incop.data.safe_pickle'),
    "incop.models": ('incop.models.architectures', 'incop.base.errors', 'incop.models.pretrained', 'incop.base.registry'),
    "incop.stopping": ('incop.stopping.criteria', 'incop.stopping.flows', 'incop.pruning.masks', 'incop.pruning.rules'),
    "incop.config": ('incop.config.schema', 'incop.data.datasets', 'incop.base.errors', 'incop.config.identity', 'incop.base.timepoints'),
    "incop.report": ('incop.report.comparison', 'incop.report.figures', 'incop.base.files', 'incop.base.text', 'incop.runs.directory', 'incop.runs.reading'),
}


def _lookup(old: str, targets: Tuple[str, ...], name: str):
    for target in targets:
        module = importlib.import_module(target)
        if hasattr(module, name):
            warnings.warn(f"{old}.{name} moved to {target}.{name}; the old path goes in incop "
                          f"{REMOVED_IN}",
                          DeprecationWarning, stacklevel=3)
            return getattr(module, name)
    raise AttributeError(f"module {old!r} has no attribute {name!r}")


class _Forward(types.ModuleType):
    """An old module path: every attribute is looked up where it lives now."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _lookup(self.__name__, MODULES[self.__name__], name)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MODULES:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return _Forward(spec.name)

    def exec_module(self, module) -> None:
        pass


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())


def package_forward(package: str) -> Callable[[str], object]:
    """A package's ``__getattr__`` for the names its module of the same path held before 0.2."""
    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _lookup(package, PACKAGES[package], name)
    return __getattr__
