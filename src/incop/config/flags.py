"""The command line's flags, generated from the configuration's dataclasses (each field carries
its flag and help), and the values of a ``--config`` file applied as the flags would be: typed
like the command line, never coerced silently."""
from __future__ import annotations

import argparse
import dataclasses

from typing import Any, Dict, Optional, Tuple

from ..base.bounded import short_repr
from ..base.errors import UsageError
from ..base.paths import expand_path
from .schema import RunConfig, _section_class, field_help


def flag_type(f: dataclasses.Field):
    t = str(f.type)
    if "bool" in t:
        return None
    if "float" in t:
        return float
    if "int" in t:
        return int
    return str


def add_config_flags(parser: argparse.ArgumentParser, multi: bool = False,
                     hidden: Tuple[str, ...] = (), helps: Optional[Dict[str, str]] = None
                     ) -> None:
    """One flag per config field; with ``multi`` each takes one or more values (a sweep axis).
    The flags have no defaults, so a namespace holds only what the command line gave: the
    defaults are the configuration's (:func:`config_from_settings`). The ``hidden`` fields'
    flags (``"prune.rule"``) are parsed but left out of the help: a command that refuses them
    says why in one line instead of argparse's "unrecognized arguments". ``helps`` replaces
    a field's help where a command gives the flag another meaning."""
    for section in RunConfig.SECTIONS:
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(_section_class(section)):
            flag = f.metadata["flag"]
            if flag is None:  # set by the API, not a flag
                continue
            shown = f.metadata.get("shown", f.default)  # where the default depends on the method
            kind, dest = flag_type(f), f"{section}.{f.name}"
            help_text = (helps or {}).get(dest) or field_help(f) + (
                "" if shown is None or kind is None else f" (default: {shown})")
            if dest in hidden:
                help_text = argparse.SUPPRESS
            if kind is None:  # a switch
                group.add_argument(f"--{flag}", dest=dest, action="store_true",
                                   help=help_text, default=argparse.SUPPRESS)
                continue
            several = f.metadata.get("nargs") or multi or f.metadata.get("several")
            group.add_argument(f"--{flag}", dest=dest, type=kind, default=argparse.SUPPRESS,
                               nargs="+" if several else None, metavar=kind.__name__.upper(),
                               help=help_text)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--config", metavar="FILE", type=lambda text: expand_path(text, "--config"),
                        help="settings from a TOML, JSON or YAML file (flag names, or "
                        "config.json's sections; a run's config.json repeats it); flags on the "
                        "command line override it")


def field_of(dest: str) -> dataclasses.Field:
    section, name = dest.split(".", 1)
    return _section_class(section).__dataclass_fields__[name]


def flag_of(dest: str) -> str:
    return "--" + field_of(dest).metadata["flag"]


def is_list_flag(dest: str) -> bool:
    return bool(field_of(dest).metadata.get("nargs"))


def file_settings(settings: Dict[str, Any], given, sweep: bool) -> Dict[str, Any]:
    """A --config file's settings typed as the flags are, except what the command line gave
    (``given``). In a sweep each is a list of values, an axis; a list in a run is an error
    (except for list flags)."""
    out: Dict[str, Any] = {}
    for key, value in settings.items():
        if key in given:
            continue
        if field_of(key).metadata["flag"] is None:  # set by prune_model, not a flag
            if value is not None:
                raise UsageError(f"--config: {key} belongs to a run of the Python API with its "
                                 f"own model or data; repeat it with incop.prune_model")
            continue
        flag, kind = flag_of(key), flag_type(field_of(key))
        optional = "Optional" in str(field_of(key).type)
        if is_list_flag(key):
            value = None if value is None else \
                [_coerce(flag, kind, v, False) for v in (value if isinstance(value, list) else [value])]
        elif isinstance(value, list) and field_of(key).metadata.get("several") and not sweep:
            value = [_coerce(flag, kind, v, False) for v in value]  # several targets, one run
        elif isinstance(value, list):
            if not sweep:
                raise UsageError(f"--config: {flag} takes one value in a run, not {short_repr(value)} (a "
                                 f"list is a sweep axis: use incop sweep)")
            value = [_coerce(flag, kind, v, optional) for v in value]
        else:
            value = [_coerce(flag, kind, value, optional)] if sweep else \
                _coerce(flag, kind, value, optional)
        out[key] = value
    return out


def _coerce(flag: str, kind, value, optional: bool = True):
    """A file's value as the flag's type, with no silent change: a number where a number goes
    (not true/false, and a whole one for a count), true or false for a switch, and null only
    where the flag has no value by default, and text only where text goes (a quoted "0.05" is
    refused for a number, as docs/reliability.md promises)."""
    if value is None:
        if optional:
            return None
        raise UsageError(f"--config: {flag} is null; give it a value or leave it out")
    if kind is None:
        if not isinstance(value, bool):
            raise UsageError(f"--config: {flag} is true or false, not {short_repr(value)}")
        return value
    if isinstance(value, (bool, list, dict)):
        raise UsageError(f"--config: {flag} expects {_kind_name(kind)}, not {short_repr(value)}")
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise UsageError(f"--config: {flag} expects {_kind_name(kind)}, not {short_repr(value)}")
        return int(value)
    if kind in (int, float) and isinstance(value, str):
        raise UsageError(f"--config: {flag} expects {_kind_name(kind)}, not {short_repr(value)} (text: "
                         f"write the number without quotes)" + _yaml_hint(value))
    if kind in (int, float) and not isinstance(value, (int, float)):
        raise UsageError(f"--config: {flag} expects {_kind_name(kind)}, not {short_repr(value)}")
    if kind is str and not isinstance(value, str):
        raise UsageError(f"--config: {flag} expects {_kind_name(kind)}, not {short_repr(value)}; put it "
                         f"in quotes")
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"--config: {flag} expects {_kind_name(kind)}, not {short_repr(value)}") from None


def _yaml_hint(text: str) -> str:
    """YAML reads 1e-3 (no dot) as text: say so, since the file looks right to its writer."""
    try:
        float(text)
    except ValueError:
        return ""
    return " (YAML reads a number like 1e-3 as text: write 0.001 or 1.0e-3)"


def _kind_name(kind) -> str:
    return {int: "a whole number", float: "a number", str: "a text value"}.get(kind, kind.__name__)


def in_field_order(settings: Dict[str, Any]) -> Dict[str, Any]:
    """``settings`` in the configuration's field order (a sweep's grid runs in it, whatever
    order the command line or the file gave them in)."""
    order = {f"{s}.{f.name}": i for i, (s, f) in enumerate(
        (s, f) for s in RunConfig.SECTIONS for f in dataclasses.fields(_section_class(s)))}
    return dict(sorted(settings.items(), key=lambda item: order[item[0]]))


def config_from_args(ns: argparse.Namespace) -> RunConfig:
    """The configuration a parsed command line (no --config file) amounts to."""
    return config_from_settings({k: v for k, v in vars(ns).items() if "." in k})


def config_from_settings(settings: Dict[str, Any]) -> RunConfig:
    """The typed configuration: the dataclasses' defaults, under ``settings`` (``section.field``
    -> value: a --config file's, the command line's over them), then validated, which fills in
    the recipe's settings and the fallbacks of what is still unset."""
    sections: Dict[str, Dict[str, Any]] = {s: {} for s in RunConfig.SECTIONS}
    on_the_way: list = []
    for key, value in settings.items():
        if isinstance(value, list) and field_of(key).metadata.get("several"):
            value, on_the_way = _several(key, value)
        elif isinstance(value, list) and not is_list_flag(key):  # '--flag=--' reads as []
            raise UsageError(f"argument {flag_of(key)}: expected one value")
        section, name = key.split(".", 1)
        sections[section][name] = value
    if on_the_way:
        sections["prune"]["keep_at"] = [*(sections["prune"].get("keep_at") or []), *on_the_way]
    return RunConfig.from_dict(sections).validate()


def _several(key: str, values: list) -> tuple:
    """``--prune_target_remaining 20 10 5``: the smallest is the target, the others the targets
    on the way (``--prune_keep_at``, joined to any given there)."""
    if not values:
        raise UsageError(f"argument {flag_of(key)}: expected one value or more")
    ordered = sorted(values)
    return ordered[0], ordered[1:]


def recipe_flags(recipe) -> str:
    """A recipe (:class:`incop.config.recipes.Recipe`) as the flags it amounts to, K standing
    for a budgeted recipe's epochs a round: what ``incop list`` and docs/configuration.md show."""
    if recipe.shown:
        return recipe.shown
    settings = recipe.settings("K" if recipe.budgeted else None, lambda key: None)
    return " ".join(_as_flag(flag_of(k), v) for k, v in settings.items())


def _as_flag(flag: str, value) -> str:
    if value is True:
        return flag
    if value is False:
        return f"(no {flag})"
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"
