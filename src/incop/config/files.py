"""``--config FILE``: settings from TOML (standard library), JSON or YAML (with PyYAML), in either
of two spellings: flag names at the top level (``net_arch = "vgg16"``), or config.json's
sections (``[train]`` ``lr = 0.01``), so a run directory's config.json repeats that run. The
command line overrides the file; an unknown key is a one-line error naming it."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict

from .schema import RunConfig
from ..base.bounded import NODE_FLOOR, check_tree, read_text, short_repr
from ..base.errors import UsageError

IGNORED = ("versions", "checksum", "resolved")  # what config.json and --print_config add


def config_fields() -> Dict[str, str]:
    """Every accepted key (flag name, and section.field) -> its ``section.field``."""
    keys: Dict[str, str] = {}
    defaults = RunConfig()
    for section in RunConfig.SECTIONS:
        for f in dataclasses.fields(getattr(defaults, section)):
            keys[f"{section}.{f.name}"] = f"{section}.{f.name}"
            if f.metadata.get("flag"):
                keys[f.metadata["flag"]] = f"{section}.{f.name}"
    return keys


def read_config_file(path: str) -> Dict[str, Any]:
    """The file's settings as ``{section.field: value}``."""
    p = Path(path)
    try:  # a regular file (a named pipe would block), of a bounded size
        text = read_text(p, CONFIG_LIMIT, "a configuration file", follow_links=True)
    except UsageError as e:
        raise UsageError(f"--config {path}: {str(e).replace(f'{p} ', '', 1)}") from None
    except OSError as e:
        raise UsageError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--config {path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    data = _parse(p, text)
    # YAML's anchors share a value that a message or a copy would print in full for every
    # reference (a few hundred bytes, gigabytes); count them each time, as printing would
    check_tree(data, f"--config {path}", len(text) + NODE_FLOOR // 10)
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a table of settings at the top level")
    fields, out, named = config_fields(), {}, {}
    for key in [*data, *(k for s in RunConfig.SECTIONS if isinstance(data.get(s), dict)
                         for k in data[s])]:
        if not isinstance(key, str):  # YAML and JSON keys may be numbers, even huge ones
            raise UsageError(f"--config {path}: the setting name {short_repr(key, 80)} is not "
                             f"text; settings are named like the flags (net_arch = ...)")
    for key, value in data.items():
        if key in IGNORED:
            continue
        if key in RunConfig.SECTIONS and isinstance(value, dict):
            items = {f"{key}.{k}": v for k, v in value.items()}
        else:
            items = {key: value}
        for name, v in items.items():
            if name not in fields:
                raise UsageError(f"--config {path}: unknown setting {short_repr(name, 80)} (see 'incop run "
                                 f"--help' for the flags; sections: {', '.join(RunConfig.SECTIONS)})")
            key_ = fields[name]
            if key_ in out:  # a flag name and its section.field: which one wins would be a guess
                raise UsageError(f"--config {path}: '{named[key_]}' and '{name}' both set "
                                 f"{key_}; keep one of them")
            out[key_], named[key_] = v, name
    return out


CONFIG_LIMIT = 1 << 20  # a configuration of a few hundred settings is a few kilobytes


def _NoAliasLoader(yaml: Any) -> Any:
    """PyYAML's safe loader, refusing anchors and aliases: a configuration has no use for them,
    and nine nested aliases of nine make a 361-byte file print as gigabytes."""
    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise ValueError("it uses an alias (*name); write the values out, incop's "
                                 "configurations need no anchors")
            return super().compose_node(parent, index)

    return Loader


def _parse(p: Path, text: str) -> Any:
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise UsageError(f"--config {p}: YAML needs PyYAML (pip install pyyaml); or use "
                                 f"TOML or JSON") from None
            return yaml.load(text, Loader=_NoAliasLoader(yaml))
        if suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                raise UsageError(f"--config {p}: TOML needs Python 3.11 or newer; use JSON") from None
            return tomllib.loads(text)
    except UsageError:
        raise
    except Exception as e:
        detail = str(e).splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UsageError(f"--config {p}: not valid {suffix[1:].upper()} ({detail})") from None
    raise UsageError(f"--config {p}: unknown file type '{suffix}'; use .toml, .json, .yaml or .yml")


def printable_config(cfg: RunConfig, resolved: Dict[str, Any]) -> str:
    """The effective configuration as JSON in config.json's layout (``--config`` reads it back
    to the same run), with the per-method defaults under "resolved" (which --config ignores)."""
    return json.dumps({**cfg.to_dict(), "resolved": resolved}, indent=2)


def resolved_defaults(cfg: RunConfig) -> Dict[str, Any]:
    """The values incop uses where the configuration says "the method's default": the pruning
    rule, the stopping criterion and its epsilon, and the flow probe's size (which depends on
    the training split, so the dataset is read)."""
    from ..data.batches import default_probe_size
    from ..data.datasets import load_raw, validation_count
    from .methods import resolve

    rule, criterion, epsilon = resolve(cfg.prune)
    probe: Any = cfg.prune.flow_probe_size
    if probe is None:
        try:
            n = len(load_raw(cfg.data.dataset, cfg.data.data_dir, cfg.data.image_size).train_y)
            probe = default_probe_size(n - validation_count(cfg.data.val_size, n))
        except UsageError as e:
            probe = f"2048 or 1/8 of the training split (the data could not be read: {e})"
    return {"rule": rule, "criterion": criterion, "epsilon": epsilon, "flow_probe_size": probe}
