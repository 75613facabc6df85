"""Recipes: a pruning method together with the training settings that make it a way to find a
sparse network (a budget per round, a learning-rate schedule, whether weights rewind). This
module is their registry; everything else (``--recipe``'s choices, ``incop list``, the
frontier's default list, the docs' table) is derived from it. Budgeted recipes are named with K,
their epochs a round (``allr-2``, ``lrr-0.5``; ``gmp-K``'s K is its whole run); a recipe of rounds followed by ``xN`` reaches
--prune_target_remaining in exactly N equal pruning steps (``allr-2x6``: ``--prune_steps 6``), and
one followed by ``@F`` or ``@pracF`` trains each round on a part F of the training split, at
random or PrAC's critical set (``lrr-1@0.3``: ``--round_data_fraction 0.3``).

A recipe names settings (``section.field`` -> value). Applied to a configuration
(:func:`incop.config.schema.RunConfig.validate`) it fills the settings the user left unset and
refuses, in one line, a setting the user gave otherwise: exactly the same from the command line,
a ``--config`` file and the Python API. With neither ``--prune_method`` nor ``--recipe``, a run
is the recommended recipe, ``allr-K`` with K the user's ``--net_train_epochs`` (2 when not
given): ``DEFAULT_RECIPE``, chosen from the frontier study (BENCHMARKS.md, "The cheapest way to
a ticket"). A method given without a recipe means exactly what it meant before."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..base.errors import UsageError
from ..base.text import count

DEFAULT_RECIPE = "allr-2"

Getter = Callable[[str], Any]  # a configuration's value of ``section.field`` (None: unset)


@dataclass(frozen=True)
class Recipe:
    """One recipe: ``pattern`` is its name, with ``K`` where a budgeted recipe's epochs a round
    go; ``settings(k, get)`` the settings it fixes (``get`` reads the configuration it is
    applied to, for settings that depend on others); ``forbids`` values it cannot run with."""

    pattern: str
    words: str
    settings: Callable[[Optional[float], Getter], Dict[str, Any]]
    frontier: Tuple[str, ...] = ()  # the names incop frontier runs by default
    forbids: Mapping[str, Tuple[Any, str]] = field(default_factory=dict)
    shown: str = ""  # its settings as flags, where they depend on another setting
    stepped: bool = True  # may be run in N equal steps (``xN``): a recipe of pruning rounds
    passes_targets: bool = True  # one search lands on several targets (one step cannot)
    run_length: bool = False  # reads --net_train_epochs as its whole run's length, not a round's

    @property
    def budgeted(self) -> bool:
        return self.pattern.endswith("-K")

    @property
    def prefix(self) -> str:
        return self.pattern[:-1] if self.budgeted else self.pattern


def _budgeted(schedule: str, rewind: Optional[str], allr: bool):
    def settings(k: Optional[float], get: Getter) -> Dict[str, Any]:
        out = {"prune.method": "sap", "train.epochs": k, "train.lr_schedule": schedule,
               "train.lr_allr": allr}
        if rewind is not None:
            out["train.rewind_to"] = rewind
        return out
    return settings


_REWOUND = {"train.rewind_to": ("none", "rewinds the weights each round")}
GMP_EPOCHS = 8.0  # the gmp recipe's run length when --net_train_epochs is not given


def _gmp(k: Optional[float], get: Getter) -> Dict[str, Any]:
    epochs = get("train.epochs") or GMP_EPOCHS
    start, end, every = (f"{epochs * f:g}ep" for f in (0.125, 0.75, 0.0625))
    return {"prune.method": "gmp", "train.epochs": epochs, "prune.gmp_start": start,
            "prune.gmp_end": end, "prune.gmp_every": every}


def _gmp_star(k: Optional[float], get: Getter) -> Dict[str, Any]:
    """GMP*: gmp's points over a run of K epochs, the rate decaying linearly from --net_lr
    between pruning steps and once more over the training after the last."""
    return {**_gmp(None, lambda key: k if key == "train.epochs" else get(key)),
            "train.lr_schedule": "linear", "prune.gmp_lr": "restart"}


_STEPS = re.compile(r"^(?P<base>.+)x(?P<steps>\d*)$")  # allr-2x6, ciapx4 (not fixed-1)
MAX_STEPS = 1000  # equal pruning steps: far beyond any schedule, a bound on what a typo costs


def _oneshot(k: Optional[float], get: Getter) -> Dict[str, Any]:
    target = get("prune.target_remaining")
    if target is None:
        raise UsageError("recipe oneshot prunes once, to --prune_target_remaining: add it "
                         "(e.g. --prune_target_remaining 5)")
    # the exact complement of the target as a short decimal: the one step keeps ceil(P% of d)
    return {"prune.method": "lth", "prune.rule": "global",
            "prune.ratio": round(1 - target / 100, 12), "experiment.imp_total_iter": 2}


RECIPES: List[Recipe] = [
    Recipe("fixed-K", "SAP pruning, K epochs a round at a constant rate, weights rewound to "
           "--rewind_to's point", _budgeted("constant", None, False),
           ("fixed-0.25", "fixed-1", "fixed-2"), _REWOUND),
    Recipe("linear-K", "SAP pruning, K epochs a round with a linear decay, weights rewound to "
           "--rewind_to's point", _budgeted("linear", None, False),
           ("linear-0.25", "linear-1", "linear-2"), _REWOUND),
    Recipe("allr-K", "SAP pruning, K epochs a round, trained weights kept, ALLR's linear decay "
           "each round (Zimmer et al. 2023)",
           _budgeted("linear", "none", True), ("allr-0.25", "allr-1", "allr-2")),
    Recipe("lrr-K", "SAP pruning, K epochs a round, trained weights kept, the linear decay "
           "restarted each round (learning-rate rewinding, Renda et al. 2020)",
           _budgeted("linear", "none", False), ("lrr-1",)),
    Recipe("ciap", "the seed's InCoP-IF: SAP pruning, each round stopped when the information "
           "flow is back (at most --net_train_epochs)",
           lambda k, get: {"prune.method": "ciap"}, ("ciap",)),
    Recipe("giap", "the seed's InCoP-GF: SAP pruning, each round stopped when the gradient "
           "flow is back (at most --net_train_epochs)",
           lambda k, get: {"prune.method": "giap"}, ("giap",)),
    Recipe("gmp", f"gradual magnitude pruning to --prune_target_remaining in one run of "
           f"--net_train_epochs (default {GMP_EPOCHS:g}), pruning from 1/8 to 3/4 of it every "
           f"1/16 (Zhu and Gupta 2017)", _gmp, ("gmp",), stepped=False, run_length=True),
    Recipe("gmp-K", "GMP*: gradual magnitude pruning to --prune_target_remaining in one run "
           "of K epochs, pruning from 1/8 to 3/4 of it every 1/16, the learning rate decaying "
           "linearly from --net_lr between pruning steps and again over the training after the "
           "last (Kurtic and Alistarh 2022)", _gmp_star, stepped=False,
           shown="--prune_method gmp --net_train_epochs K --gmp_start (K/8)ep --gmp_end "
                 "(3K/4)ep --gmp_every (K/16)ep --net_lr_schedule linear --gmp_lr restart"),
    Recipe("oneshot", "one global magnitude pruning step to --prune_target_remaining after "
           "round 0, then one round of training", _oneshot, ("oneshot",),
           shown="--prune_method lth --prune_rule global --prune_ratio (1 - P/100) "
                 "--exper_imp_total_iter 2, P being --prune_target_remaining", stepped=False,
           passes_targets=False),
]


def find(name: str) -> Tuple[Recipe, Optional[float]]:
    """The recipe called ``name`` and its budget (None for an unbudgeted one); a suffix ``xN``
    (:func:`steps_of`) is not part of it."""
    text = split_steps(name)[0]
    for r in RECIPES:
        if r.budgeted and text.startswith(r.prefix):
            return r, _budget(text, r.prefix)
        if not r.budgeted and text == r.pattern:
            return r, None
    raise UsageError(f"unknown recipe {name!r}: choose from {names_text()} (incop list shows "
                     f"their settings)")


def _budget(name: str, prefix: str) -> float:
    try:
        k = float(name[len(prefix):])
    except ValueError:
        k = -1.0
    if not (k > 0 and k < float("inf")):
        if prefix == "gmp-":  # gmp-K: a whole run, without steps or a part of the data
            raise UsageError(f"recipe {name}: the budget after 'gmp-' must be a positive number "
                             f"of epochs, the length of its one run (e.g. gmp-12)")
        raise UsageError(f"recipe {name}: the budget after '{prefix}' must be a positive number "
                         f"of epochs per round (e.g. {prefix}1 or {prefix}0.25), then at most "
                         f"xN (N equal steps) and @F or @pracF (a part of the data), in that "
                         f"order: {prefix}2x6@0.3")
    return k


def split_data(name: str) -> Tuple[str, Optional[float], str]:
    """``lrr-1@prac0.3`` -> (``lrr-1``, 0.3, ``prac``): a recipe and the part of the training
    split its rounds train on (None: all of it) and how that part is chosen."""
    text = str(name).strip().lower()
    if "@" not in text:
        return text, None, "random"
    base, data = text.rsplit("@", 1)
    choice = "prac" if data.startswith("prac") else "random"
    try:
        fraction = float(data[len("prac"):] if choice == "prac" else data)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction < 1:
        raise UsageError(f"recipe {name}: after '@' give the part of the training split each "
                         f"round trains on, a fraction below 1, drawn at random (@0.3) or PrAC's "
                         f"critical set (@prac0.3)")
    return base, fraction, choice


def data_of(name: str) -> Tuple[Optional[float], str]:
    """The part of the training split recipe ``name``'s rounds train on, and how it is
    chosen: (None, ``random``) for all of it."""
    find(name)
    return split_data(name)[1:]


def split_steps(name: str) -> Tuple[str, Optional[int]]:
    """``allr-2x6`` -> (``allr-2``, 6): a recipe and the equal pruning steps it is run in
    (None: its own rounds); an ``@`` part is not part of it."""
    text = split_data(name)[0]
    match = _STEPS.match(text)
    if match is None:
        return text, None
    base, steps = match.group("base"), match.group("steps")
    if not (steps and 1 <= int(steps) <= MAX_STEPS):
        raise UsageError(f"recipe {name}: the steps after 'x' must be a whole number from 1 to "
                         f"{MAX_STEPS} (e.g. {base}x6: {base} in 6 equal pruning steps)")
    return base, int(steps)


def steps_of(name: str) -> Optional[int]:
    """The equal pruning steps recipe ``name`` runs in, or None."""
    r, _ = find(name)
    steps = split_steps(name)[1]
    if steps is not None and not r.stepped:
        stepped = ", ".join(x.pattern for x in RECIPES if x.stepped)
        raise UsageError(f"recipe {name}: {r.pattern} has no rounds to run in equal steps; "
                         f"'xN' follows a recipe of rounds ({stepped})")
    return steps


def named_with(name: str, steps: Optional[int], fraction: Optional[float],
               choice: Optional[str]) -> str:
    """Recipe ``name`` with the steps and the part of the data given beside it
    (``--prune_steps``, ``--round_data_fraction``, ``--round_data_choice``) in its name, where
    the name does not say them already."""
    r, k = find(name)
    have_steps, (have_fraction, have_choice) = steps_of(name), data_of(name)
    steps = have_steps if have_steps is not None else steps
    if have_fraction is not None:
        fraction, choice = have_fraction, have_choice
    return _spelled(r, k, steps, fraction, choice)


def canonical(name: str) -> str:
    """``ALLR-2.0x06@0.30`` -> ``allr-2x6@0.3``: one spelling per recipe, for run directories
    and labels."""
    r, k = find(name)
    return _spelled(r, k, steps_of(name), *data_of(name))


def _spelled(r: Recipe, k: Optional[float], steps: Optional[int], fraction: Optional[float],
             choice: str) -> str:
    data = "" if fraction is None else f"@{'prac' if choice == 'prac' else ''}{fraction:g}"
    return (f"{r.prefix}{k:g}" if r.budgeted else r.pattern) + (f"x{steps}" if steps else "") \
        + data


def with_budget(name: str, k: float) -> str:
    """Budgeted recipe ``name`` with budget ``k`` instead, its suffixes kept."""
    r, _ = find(name)
    return _spelled(r, k, steps_of(name), *data_of(name))


def budget_words(name: str, k: float) -> str:
    """What budget ``k`` means for recipe ``name``: epochs a round, or gmp-K's whole run."""
    if not find(name)[0].stepped:
        return f"a run of {count(k, 'epoch')}"
    return f"{count(k, 'epoch')} a round"


def is_recipe(name: str) -> bool:
    try:
        find(name)
    except UsageError:
        return False
    return True


def names_text() -> str:
    return ", ".join(r.pattern for r in RECIPES) + " (K: epochs a round, gmp-K's whole " \
        "run; xN after a recipe " \
        "of rounds: N equal steps; @F or @pracF: each round on a part F of the data)"


def frontier_names() -> List[str]:
    return [n for r in RECIPES for n in r.frontier]


def recipe_settings(name: str, get: Getter = lambda key: None) -> Dict[str, Any]:
    """The settings (``section.field`` -> value) recipe ``name`` fixes, its budget included."""
    r, k = find(name)
    steps, (fraction, choice) = steps_of(name), data_of(name)
    return {**r.settings(k, get), **({"prune.steps": steps} if steps else {}),
            **({"train.round_data_fraction": fraction, "train.round_data_choice": choice}
               if fraction is not None else {})}


def forbidden(name: str) -> Mapping[str, Tuple[Any, str]]:
    """Settings recipe ``name`` cannot run with: ``section.field`` -> (value, why)."""
    return find(name)[0].forbids


def describe(name: str) -> str:
    """A recipe in words, its budget filled in, for messages, ``incop list`` and the docs."""
    r, k = find(name)
    words = r.words
    if k is not None:
        words = words.replace("K epochs", f"{k:g} epoch{'' if k == 1 else 's'}")
    steps, (fraction, choice) = steps_of(name), data_of(name)
    if steps:
        words += f", in {count(steps, 'equal pruning step')} to --prune_target_remaining"
    if fraction is not None:
        words += (f", each round on {100 * fraction:g}% of the training split "
                  f"({'PrAC' + chr(39) + 's critical set' if choice == 'prac' else 'at random'})")
    return words


def default_name(epochs: Optional[float]) -> str:
    """The recipe a run with neither a method nor a recipe runs: allr-K with the user's
    budget, or DEFAULT_RECIPE."""
    if epochs is None:
        return DEFAULT_RECIPE
    return f"{find(DEFAULT_RECIPE)[0].prefix}{epochs:g}"
