"""Recipes: a pruning method together with the training settings that make it a way to find a
sparse network (a budget per round, a learning-rate schedule, whether weights rewind). The
budgeted recipes are named with K, their epochs a round:

  fixed-K    SAP, a constant rate, weights rewound to the rewind point
  linear-K   SAP, a linear decay restarted every round, weights rewound
  lrr-K      SAP, learning-rate rewinding: the trained weights kept, the linear decay restarted
  allr-K     lrr-K with ALLR's rate for each round (Zimmer et al. 2023)
  ciap, giap the seed's InCoP methods (their own stopping, the run's budget as the cap)

``incop frontier`` runs them side by side; DEFAULT_RECIPE is what ``incop run`` runs when no
--prune_method is given, chosen from the frontier study (BENCHMARKS.md, "The cheapest way to a
ticket"). A method given on the command line, or in a --config file, means exactly what it
meant before."""
from __future__ import annotations

import copy
from typing import Any, Dict, Iterable, List, Mapping

from ..base.errors import UsageError
from .flags import flag_of

DEFAULT_RECIPE = "allr-2"
# What each budgeted recipe sets besides its budget (prune.method and train.epochs)
_BUDGETED = {
    "fixed-": {},
    "linear-": {"train.lr_schedule": "linear"},
    "lrr-": {"train.lr_schedule": "linear", "train.rewind_to": "none"},
    "allr-": {"train.lr_schedule": "linear", "train.rewind_to": "none", "train.lr_allr": True},
}
NAMES = "fixed-K, linear-K, lrr-K, allr-K (K epochs a round), ciap, giap"


def is_recipe(name: str) -> bool:
    """A name recipe_settings knows (its budget is checked there)."""
    return name in ("ciap", "giap") or name.startswith(tuple(_BUDGETED))


def recipe_settings(name: str) -> Dict[str, Any]:
    """The settings (``section.field`` -> value) recipe ``name`` fixes, its budget included."""
    if name in ("ciap", "giap"):
        return {"prune.method": name}
    for prefix, extra in _BUDGETED.items():
        if name.startswith(prefix):
            return {"prune.method": "sap", "train.epochs": _budget(name, prefix), **extra}
    raise UsageError(f"unknown recipe {name!r}: choose from {NAMES}")


def _budget(name: str, prefix: str) -> float:
    try:
        k = float(name[len(prefix):])
    except ValueError:
        k = -1.0
    if not k > 0:
        raise UsageError(f"recipe {name}: the budget after '{prefix}' must be a positive number "
                         f"of epochs per round (e.g. {prefix}1 or {prefix}0.25)")
    return k


def with_recipe(cfg, name: str = DEFAULT_RECIPE):
    """A copy of RunConfig ``cfg`` running recipe ``name`` (its method, budget, schedule and
    rewinding; everything else as ``cfg`` has it)."""
    out = copy.deepcopy(cfg)
    for key, value in recipe_settings(name).items():
        section, field_name = key.split(".")
        setattr(getattr(out, section), field_name, value)
    return out


def clashes(explicit: Iterable[str], values: Mapping[str, Any]) -> List[str]:
    """The settings the user gave (``explicit``, with ``values``) that DEFAULT_RECIPE fixes
    otherwise; the budget is not one of them (the user's is kept)."""
    explicit = set(explicit)
    return [key for key, want in recipe_settings(DEFAULT_RECIPE).items()
            if key in explicit and key != "train.epochs" and values[key] != want]


def default_recipe(explicit: Iterable[str], values: Mapping[str, Any]) -> Dict[str, Any]:
    """The settings DEFAULT_RECIPE adds to a run that names no method: ``explicit`` are the
    settings the user gave (command line or --config), ``values`` their values. The user's
    budget (--net_train_epochs) is kept; a schedule or rewinding the recipe cannot honour is
    refused in one line that says how to get it."""
    explicit = set(explicit)
    fixed = recipe_settings(DEFAULT_RECIPE)
    for key in clashes(explicit, values)[:1]:
        flag = flag_of(key)
        raise UsageError(f"{flag} {values[key]}: with no --prune_method incop runs its "
                         f"recommended recipe {DEFAULT_RECIPE} ({describe(DEFAULT_RECIPE)}), "
                         f"which needs {flag} {fixed[key]}; give a method (e.g. --prune_method "
                         f"sap) to choose {flag} yourself")
    return {k: v for k, v in fixed.items() if k not in explicit}


def describe(name: str) -> str:
    """A recipe in words, for messages and docs."""
    settings = recipe_settings(name)
    if "train.epochs" not in settings:
        return f"the seed's {name}"
    k = f"{settings['train.epochs']:g} epoch{'s' if settings['train.epochs'] != 1 else ''} a round"
    if settings.get("train.lr_allr"):
        return f"SAP pruning, {k}, trained weights kept, ALLR's linear decay each round"
    if settings.get("train.rewind_to") == "none":
        return f"SAP pruning, {k}, trained weights kept, the linear decay restarted each round"
    if settings.get("train.lr_schedule") == "linear":
        return f"SAP pruning, {k}, weights rewound, a linear decay"
    return f"SAP pruning, {k}, weights rewound"
