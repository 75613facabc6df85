"""Command line: ``incop run`` with the seed's flags, and ``incop list``.

Every bad input becomes one line on stderr and exit status 2 (no traceback)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import List, Optional, Sequence

from .config import RunConfig
from .errors import UsageError

PROG = "incop"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; we want one line
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _flag_type(f: dataclasses.Field):
    t = str(f.type)
    if "bool" in t:
        return None
    if "float" in t:
        return float
    if "int" in t:
        return int
    return str


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    defaults = RunConfig()
    for section in RunConfig.SECTIONS:
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(getattr(defaults, section)):
            flag, default = f.metadata["flag"], getattr(getattr(defaults, section), f.name)
            help_text = f.metadata["help"] + ("" if default is None else f" (default: {default})")
            kind = _flag_type(f)
            if kind is None:
                group.add_argument(f"--{flag}", dest=f"{section}.{f.name}", action="store_true",
                                   help=f.metadata["help"])
            else:
                group.add_argument(f"--{flag}", dest=f"{section}.{f.name}", type=kind,
                                   default=default, metavar=kind.__name__.upper(), help=help_text)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(ns: argparse.Namespace) -> RunConfig:
    sections = {s: {} for s in RunConfig.SECTIONS}
    for key, value in vars(ns).items():
        if "." in key:
            section, name = key.split(".", 1)
            sections[section][name] = value
    return RunConfig.from_dict(sections).validate()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Iterative magnitude pruning with InCoP stopping "
                     "(lth, sap, ciap/incop-if, giap/incop-gf).")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"incop {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="run an IMP search (the seed's prune.py flags)",
                         description="Run an iterative-magnitude-pruning search. Flags accept "
                         "--flag=value and --flag value.")
    _add_config_flags(run)
    sub.add_parser("list", help="list architectures, datasets and methods")
    return parser


def _cmd_run(ns: argparse.Namespace) -> int:
    from .imp import IMPExperiment, run_directory

    cfg = config_from_args(ns)
    exp = IMPExperiment(cfg, run_dir=None, progress=False if ns.quiet else None)
    exp.run_dir = run_directory(cfg)
    try:
        exp.run()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; completed rounds are saved in {exp.run_dir.path}",
              file=sys.stderr)
        return 130
    return 0


def _cmd_list() -> int:
    from .data import DATASETS
    from .methods import METHODS
    from .models import MODELS

    print("architectures: " + ", ".join(MODELS.names()))
    print("datasets:      " + ", ".join(DATASETS.names()))
    print("methods:")
    for name, m in METHODS.items():
        print(f"  {name:<6} {m.description}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if args and args[0].startswith("--") and args[0] not in ("--help", "--version"):
        args.insert(0, "run")  # the seed typed prune.py flags with no sub-command
    try:
        ns = build_parser().parse_args(args)
        if ns.command == "run":
            return _cmd_run(ns)
        if ns.command == "list":
            return _cmd_list()
        build_parser().print_help()
        return 2
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
