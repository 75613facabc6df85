"""Typed run configuration. Each field carries its command-line flag and help text, so the CLI,
validation and the run's ``config.json`` share one definition."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..data.datasets import MIN_VAL_SAMPLES
from ..base.errors import UsageError
from ..base.paths import expand_path
from ..base.text import one_of
from ..base.timepoints import parse_point
from . import recipes
from . import identity


def opt(default: Any, flag: Optional[str], help: str, **extra: Any) -> Any:
    """A config field; ``flag`` None keeps it off the command line (set by the API). ``fallback``
    (a value, or a function of the configuration): the value of a field left unset (None) that
    no recipe set; ``path``: a file or folder, ``~`` and ``$VARS`` expanded; ``shown``: the
    default as help texts show it; ``before``: the value runs had before the setting existed,
    where that is not its fallback or default (:func:`baselines`); ``choices``: the values it
    takes, a tuple, or a function giving a registry's names (its help's ``{choices}`` lists them:
    :func:`field_help`)."""
    return field(default=default, metadata={"flag": flag, "help": help, **extra})


LR_SCHEDULES = ("constant", "step", "cosine", "linear")  # --net_lr_schedule (engine.schedules)


def _names(kind: str) -> List[str]:
    """A registry's names, for ``choices``: imported when asked (they sit in other packages)."""
    if kind == "rule":
        from ..pruning.rules import RULES as registry
    elif kind == "schedule":
        from ..pruning.sparsity_schedules import SPARSITY_SCHEDULES as registry
    else:
        from ..stopping.criteria import CRITERIA as registry
    return registry.names()


def choices_of(f: dataclasses.Field) -> Optional[tuple]:
    """The values field ``f`` takes (None: any of its type)."""
    choices = f.metadata.get("choices")
    return tuple(choices() if callable(choices) else choices) if choices is not None else None


def field_help(f: dataclasses.Field) -> str:
    """A field's help text, its ``{choices}`` filled in from the tuple or registry."""
    text = f.metadata["help"]
    return text.replace("{choices}", one_of(choices_of(f))) if "{choices}" in text else text


DEFAULT_ROUNDS = 5  # --exper_imp_total_iter of a run without a target: the seed's
TARGET_ROUNDS = 100  # ... with --prune_target_remaining: the most rounds, generous on purpose
TARGET_ROUNDS_TEXT = f"at most {TARGET_ROUNDS}"


@dataclass
class DataConfig:
    dataset: str = opt("digits", "net_dataset", "dataset: digits, MNIST, FashionMNIST, CIFAR10, "
                       "CIFAR100, npz (--data_dir FILE.npz) or folder (--data_dir PATH of "
                       "class subfolders)")
    data_dir: Optional[str] = opt(None, "data_dir", "folder with the dataset files (default: the "
                                  "Debian dataset package location for FashionMNIST)", path=True)
    val_size: float = opt(0.1, "net_val_size", "validation split taken from the training data: a "
                          "fraction in (0, 1) or a sample count")
    batch_size: int = opt(64, "net_batch_size", "mini-batch size for training")
    allow_small_val: bool = opt(False, "allow_small_val", "accept a validation split under "
                                f"{MIN_VAL_SAMPLES} samples (its accuracy moves in steps of "
                                f"2 points or more)")
    image_size: Optional[int] = opt(None, "net_image_size", "resize the images of --net_dataset "
                                    "folder to N x N (needed when their sizes differ)")
    fingerprint: Optional[str] = opt(None, None, "what the data was (sizes and a hash of a "
                                     "sample), set by prune_model for a user's own data")


@dataclass
class ModelConfig:
    arch: str = opt("lenet300", "net_arch", "architecture (see 'incop list')")
    pretrained: Optional[str] = opt(None, "net_pretrained", "start from a local state-dict file, "
                                    "or 'imagenet' (also 1): torchvision's ImageNet weights, "
                                    "from its cache; nothing is downloaded")
    init: str = opt("kaiming", "net_init", "initialisation of incop's own architectures: kaiming "
                    "(OpenLTH's: Kaiming normal, zero biases) or pytorch (each layer's default, "
                    "as incop 0.1 did)", before="pytorch", choices=("kaiming", "pytorch"))
    fingerprint: Optional[str] = opt(None, None, "what the model was (module types, parameter "
                                     "names and shapes, a hash of the initial weights), set by "
                                     "prune_model for a user's own model")


@dataclass
class TrainConfig:
    lr: float = opt(0.01, "net_lr", "learning rate (the optimizer's, before any schedule)")
    optimizer: str = opt("sgd", "net_optimizer", "optimizer: sgd (with --net_momentum), adam "
                         "(the lottery-ticket paper's LeNet recipe: --net_lr 1.2e-3) or adamw "
                         "(decoupled weight decay)", choices=("sgd", "adam", "adamw"))
    epochs: Optional[float] = opt(None, "net_train_epochs", "maximum training epochs per "
                                  "pruning round (the fixed rule trains exactly this many; "
                                  "fractions such as 1.5 allowed)", fallback=20,
                                  shown="the recipe's K; 20 with a --prune_method")
    warmup: int = opt(10, "net_warmup", "dense warm-up epochs (the dense network the flows "
                      "compare with)")
    momentum: float = opt(0.0, "net_momentum", "SGD momentum")
    weight_decay: float = opt(5e-4, "net_weight_decay", "SGD weight decay")
    lr_schedule: Optional[str] = opt(None, "net_lr_schedule", "learning-rate schedule, "
                                     "restarted at every round over --net_train_epochs: "
                                     "{choices} (linear: down to 0 over the round's budget)",
                                     fallback="constant", choices=LR_SCHEDULES,
                                     shown="the recipe's; constant with a --prune_method")
    round_data_fraction: Optional[float] = opt(
        None, "round_data_fraction", "train the search's rounds (not the warm-up, not the "
        "ticket) on this fraction of the training split, drawn at random for each round from "
        "its seed; --net_train_epochs are then passes over that part, and every epoch count "
        "(rounds.csv, the frontier's cost) is in full-data epochs", shown="none: all of it")
    round_data_choice: Optional[str] = opt(
        None, "round_data_choice", "how --round_data_fraction's part is chosen: random, or prac "
        "(after round 0, the examples the last round forgot or never learned and those the "
        "pruned and dense networks classify differently first: Zhang et al. 2021's prune-aware "
        "critical set)", fallback="random", shown="random", choices=("random", "prac"))
    augment: bool = opt(False, "net_augment", "augment training images as CIFAR results do: "
                        "pad by 4, random crop back, random horizontal flip")
    lr_warmup_iters: int = opt(0, "net_lr_warmup_iters", "ramp the learning rate up linearly "
                               "over this many iterations at the start of every training run "
                               "(0: none)")
    lr_allr: Optional[bool] = opt(None, "net_lr_allr", "ALLR (Zimmer et al. 2023): start each pruned "
                        "round's linear schedule at --net_lr times d/sqrt(s), d how far "
                        "pruning moved the trained weights (relative L2), s the fraction of "
                        "survivors it removed, clipped to [round budget / dense training, 1]; "
                        "needs --net_lr_schedule linear and --rewind_to none (on in the "
                        "allr-K recipes, the default)", fallback=False,
                        shown="the recipe's; off with a --prune_method")
    lr_milestones: Optional[List[float]] = opt(None, "net_lr_milestones", "epochs of a round at "
                                               "which the step schedule multiplies the rate by "
                                               "--net_lr_gamma", nargs="+")
    lr_gamma: float = opt(0.1, "net_lr_gamma", "factor of the step schedule at each milestone")
    rewind_to: Optional[str] = opt(None, "rewind_to", "rewind point: warmup (the end of the "
                                   "dense warm-up), init (the initial weights: the lottery "
                                   "ticket's rewind), a point of the warm-up as <k>it or <k>ep "
                                   "(late rewinding), or none (keep the trained weights after "
                                   "pruning: fine-tuning, or learning-rate rewinding with a "
                                   "schedule)", fallback="warmup",
                                   shown="the recipe's; warmup with a --prune_method")
    precision: str = opt("fp32", "precision", "training and evaluation precision: fp32, bf16 "
                         "(autocast, CPU and CUDA) or fp16 (autocast with a gradient scaler, "
                         "CUDA); masks, pruning, flows and metrics stay fp32 or better",
                         choices=("fp32", "bf16", "fp16"))
    channels_last: str = opt("auto", "channels_last", "channels-last memory for convolutional "
                             "models: auto (on in bf16/fp16), on or off", choices=("auto", "on", "off"))
    ticket_epochs: float = opt(0, "ticket_epochs", "after the search, retrain each trial's final "
                               "mask from --ticket_rewind's point for this many epochs (no early "
                               "stop, --net_lr and the run's schedule) and report it as the "
                               "ticket's accuracy; incop ablate then checks it; 0: no ticket")
    ticket_rewind: Optional[str] = opt(None, "ticket_rewind", "where the ticket (--ticket_epochs) "
                                       "and incop ablate restart from: warmup (the end of the "
                                       "dense warm-up), init, or a point of the warm-up as <k>it "
                                       "or <k>ep", shown="--rewind_to's point; warmup with "
                                       "--rewind_to none")


@dataclass
class PruneConfig:
    method: Optional[str] = opt(None, "prune_method", "lth, sap, ciap (incop-if), giap "
                                "(incop-gf) or gmp (gradual magnitude pruning in one run); with "
                                "neither a method nor --recipe: the recommended recipe, allr-2 "
                                "(docs/methods.md)", shown="the recipe's")
    recipe: Optional[str] = opt(None, "recipe", "run a recipe: a method with the budget, schedule "
                                "and rewinding that make it a way to find a sparse network "
                                "(allr-K, lrr-K, fixed-K, linear-K with K epochs a round, ciap, "
                                "giap, gmp, gmp-K: GMP* over K epochs, oneshot; incop list shows "
                                "their settings), followed "
                                "by xN to reach the target in N equal steps (allr-2x6) and @F or "
                                "@pracF to train each round on a part F of the data (lrr-1@0.3); "
                                "settings you give must agree with it", shown="allr-2 with no "
                                "--prune_method (allr-K with your --net_train_epochs K)")
    p: float = opt(1.0, "prune_p", "PQ index p (0 < p < q)")
    q: float = opt(2.0, "prune_q", "PQ index q")
    ratio: Optional[float] = opt(None, "prune_ratio", "fraction of each layer's survivors LTH "
                                 "removes per round", fallback=0.2, shown="0.2")
    eta: float = opt(0.0, "prune_eta", "SAP eta (retained-count slack)")
    gamma: float = opt(1.0, "prune_gamma", "SAP gamma (ratio scale)")
    beta: float = opt(0.9, "prune_beta", "SAP beta (largest ratio per round)")
    epsilon: Optional[float] = opt(None, "prune_epsilon", "flow distance under which a round stops "
                                   "(default: 0.11 for ciap, the calibrated value for giap)")
    rule: Optional[str] = opt(None, "prune_rule", "override the method's pruning rule: {choices}",
                              choices=lambda: _names("rule"))
    criterion: Optional[str] = opt(None, "stop_criterion", "override the method's stopping "
                                   "rule: {choices}", choices=lambda: _names("criterion"))
    flow_probe_size: Optional[int] = opt(None, "flow_probe_size", "training samples used to measure "
                                         "flows (default: 2048 or 1/8 of the training split, "
                                         "whichever is smaller, at least 256)")
    flow_stat: str = opt("mean", "flow_stat", "information-flow statistic: mean (the paper's signed "
                         "mean), abs_mean, or fro (relative Frobenius distance of the matrices)", choices=("mean", "abs_mean", "fro"))
    target_remaining: Optional[float] = opt(None, "prune_target_remaining", "prune until this "
                                            "percentage of weights remains (the last step is "
                                            "trimmed to land on it), then stop; "
                                            "--exper_imp_total_iter becomes the most rounds, and "
                                            "a run that ends before the target says so; "
                                            "several (20 10 5): the smallest, through the "
                                            "others (--prune_keep_at)", several=True)
    keep_at: Optional[List[float]] = opt(None, "prune_keep_at", "earlier targets (percentages "
                                         "remaining) the search lands on exactly on its way to "
                                         "--prune_target_remaining, the step that crosses one "
                                         "trimmed onto it; each one's round keeps its mask and "
                                         "network, so one search gives every sparsity",
                                         nargs="+")
    steps: Optional[int] = opt(None, "prune_steps", "reach --prune_target_remaining in exactly "
                               "this many pruning steps, each keeping the same fraction of the "
                               "weights (of each layer when the rule is layerwise, as lth's is; "
                               "of the network for global and sap), smallest magnitudes first, "
                               "the last landing on the target; the rule's own step sizes "
                               "(--prune_ratio, SAP's PQ index) are not used")
    schedule: Optional[str] = opt(None, "prune_schedule", "what prunes when: {choices} "
                                  "(rounds: each step sized by the rule; steps: "
                                  "--prune_steps' equal steps; cubic: gradual magnitude "
                                  "pruning's)", choices=lambda: _names("schedule"),
                                  shown="cubic with --prune_method gmp, steps with "
                                  "--prune_steps, else rounds")
    gmp_start: Optional[str] = opt(None, "gmp_start", "gradual magnitude pruning: where the "
                                   "sparsity starts rising, in the run after the warm-up "
                                   "(<k>it, <f>ep or start)")
    gmp_end: Optional[str] = opt(None, "gmp_end", "gradual magnitude pruning: where it reaches "
                                 "--prune_target_remaining (before the end of "
                                 "--net_train_epochs, which trains on)")
    gmp_every: Optional[str] = opt(None, "gmp_every", "gradual magnitude pruning: how often it "
                                   "prunes (<k>it or <f>ep)")
    gmp_lr: Optional[str] = opt(None, "gmp_lr", "gradual magnitude pruning's learning rate: "
                                "run (--net_lr_schedule spans the whole run, Zhu and Gupta's) or "
                                "restart (the schedule restarts from --net_lr at every pruning "
                                "step and once more for the training after the last, GMP*'s; "
                                "give it a decaying --net_lr_schedule, e.g. linear)",
                                fallback="run", shown="run", choices=("run", "restart"))
    stop_on_recovery: bool = opt(False, "stop_on_recovery", "also stop a round once validation "
                                 "accuracy is back to the dense warm-up's")
    check_every: str = opt("1ep", "check_every", "how often the stopping criterion is asked: "
                           "iterations (200it) or a fraction of an epoch (0.25ep)")
    include: Optional[List[str]] = opt(None, "prune_include", "also prune the weights whose "
                                       "parameter or module name matches one of these shell "
                                       "patterns (embeddings, LSTM/GRU weights, ...)", nargs="+")
    exclude: Optional[List[str]] = opt(None, "prune_exclude", "never prune the weights whose "
                                       "parameter or module name matches one of these shell "
                                       "patterns (e.g. 'fc3' or 'classifier.*')", nargs="+")


@dataclass
class ExperimentConfig:
    imp_total_iter: Optional[int] = opt(None, "exper_imp_total_iter", "pruning rounds (round 0 "
                                        "trains the dense network from the rewind point); with "
                                        "--prune_target_remaining, the most rounds",
                                        fallback=lambda c: c.prune.steps + 1 if c.prune.steps
                                        else DEFAULT_ROUNDS if c.prune.target_remaining is None
                                        else TARGET_ROUNDS,
                                        shown=f"5; {TARGET_ROUNDS_TEXT} with "
                                        f"--prune_target_remaining; N + 1 with --prune_steps N")
    num_trial: int = opt(1, "exper_num_trial", "trials, with seeds seed, seed+1, ...")
    seed: int = opt(0, "seed", "seed of the first trial")
    device: str = opt("auto", "device", "{choices}", choices=("auto", "cpu", "cuda"))
    gpu_id: Optional[int] = opt(None, "exper_gpu_id", "CUDA device index (implies --device cuda "
                                "when --device is auto)")
    exper_type: str = opt("efficiency", "exper_type", "the seed's experiment label (efficiency or "
                          "performance); recorded in config.json", choices=("efficiency", "performance"))
    threads: Optional[int] = opt(None, "threads", "CPU compute threads (default: the cores "
                                 "this process may use, shared among concurrent --workers)")
    download: bool = opt(False, "download", "fetch MNIST, FashionMNIST, CIFAR10 or CIFAR100 into "
                         "--data_dir (default: ~/.cache/incop/data) from the public mirrors, "
                         "checked by MD5; nothing is downloaded without it")
    tensorboard: bool = opt(False, "tensorboard", "also write TensorBoard event files into the "
                            "run directory (pip install 'incop[tensorboard]')")
    wandb: bool = opt(False, "wandb", "also log the run to Weights & Biases (pip install "
                      "'incop[wandb]'; WANDB_MODE=offline keeps it on disk)")
    wandb_project: Optional[str] = opt(None, "wandb_project", "the Weights & Biases project "
                                       "(default: incop)")
    allow_untrained: bool = opt(False, "allow_untrained", "go on when the dense network is "
                                "still at chance after its warm-up (the summary then says the "
                                "search ran on an untrained network)")
    output_dir: str = opt("output", "output_dir", "where run directories are written", path=True)
    run_name: Optional[str] = opt(None, "run_name", "run directory name (default: a hash of the "
                                  "configuration)")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    SECTIONS = ("data", "model", "train", "prune", "experiment")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunConfig":
        return cls(**{s: _section_class(s)(**d.get(s, {})) for s in cls.SECTIONS})

    def validate(self, registry_names: bool = True) -> "RunConfig":
        """Check every value (UsageError naming the flag) and resolve what is left unset: the
        recipe's settings, then the fallbacks (see :func:`resolve`). ``registry_names`` False
        skips the architecture and dataset names, for a user's own model and data."""
        resolve(self)
        _validate(self, registry_names)
        return self

    def resolved(self) -> "RunConfig":
        """A copy with the recipe and the fallbacks filled in (:func:`resolve`)."""
        return resolve(copy.deepcopy(self))

    def run_id(self) -> str:
        """Short hash of everything that changes results (not where they are written, nor the
        recipe's name: its settings are hashed)."""
        blob = json.dumps(comparable(self.resolved().to_dict()), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


def _baselines() -> Dict[Tuple[str, str], Any]:
    """Every setting added after the first release (not in ``identity.FIRST_SETTINGS``) with its
    baseline: the value runs had before it existed, its ``before``, else its fallback, else its
    default. A setting at its baseline is left out of run ids and resume checks."""
    out = {}
    for section in RunConfig.SECTIONS:
        for f in dataclasses.fields(_section_class(section)):
            if (section, f.name) in identity.FIRST_SETTINGS:
                continue
            fallback = f.metadata.get("fallback")
            out[section, f.name] = f.metadata["before"] if "before" in f.metadata else \
                fallback if fallback is not None and not callable(fallback) else f.default
    return out


def comparable(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """What must match for a run (a config.json's dict) to be resumed: ``identity.comparable``
    with this configuration's baselines."""
    return identity.comparable(cfg, BASELINES)


def warmup_identity(cfg: Dict[str, Any], seed: int, versions: Dict[str, str], device: str,
                    threads: int) -> Dict[str, Any]:
    """What determines a trial's dense warm-up (``identity.warmup_identity``)."""
    return identity.warmup_identity(cfg, BASELINES, seed, versions, device, threads)


MAX_RATE = 1e6  # a learning rate beyond this overflows float32 updates; no network trains with it
MAX_SEED = 2**40  # round seeds are seed * 100_003 + round + 1, within torch's 64-bit seeds
MAX_IMAGE_SIZE = 4096  # --net_image_size: a larger resize of every image exhausts memory


def flag_name(key: str) -> str:
    """``train.lr`` -> ``--net_lr``: how the command line names a setting."""
    section, name = key.split(".", 1)
    flag = _section_class(section).__dataclass_fields__[name].metadata["flag"]
    return f"--{flag}" if flag else f"config.{key}"


def api_name(key: str) -> str:
    """``train.lr`` -> ``TrainConfig.lr``: how the Python API names a setting."""
    section, name = key.split(".", 1)
    return f"{_section_class(section).__name__}.{name}"


_FLAG = re.compile(r"--([a-z][a-z0-9_]*)")


def api_words(text: str) -> str:
    """A message that names command-line flags, with the Python API's names instead
    (``--prune_target_remaining`` -> ``PruneConfig.target_remaining``), for API users."""
    flags = {f.metadata["flag"]: key for key, f in _fields(RunConfig()) if f.metadata["flag"]}
    return _FLAG.sub(lambda m: api_name(flags[m.group(1)]) if m.group(1) in flags
                     else m.group(0), text)


@contextlib.contextmanager
def api_errors():
    """Inside: a UsageError's message names config fields, not flags (its type is kept)."""
    try:
        yield
    except UsageError as e:
        e.args = (api_words(str(e)),) + e.args[1:]
        raise


def _section_class(name: str):
    return {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prune": PruneConfig,
            "experiment": ExperimentConfig}[name]


def _get(c: "RunConfig", key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(c, section), name)


def _set(c: "RunConfig", key: str, value: Any) -> None:
    section, name = key.split(".", 1)
    setattr(getattr(c, section), name, value)


def _fields(c: "RunConfig"):
    """(``section.field``, dataclass field) for every setting."""
    for section in RunConfig.SECTIONS:
        for f in dataclasses.fields(getattr(c, section)):
            yield f"{section}.{f.name}", f


def resolve(c: "RunConfig") -> "RunConfig":
    """Fill in what ``c`` leaves unset, in place: first the types are checked and paths
    expanded; then the recipe (``--recipe``, or with neither a recipe nor a method the
    recommended one, allr-K with the user's budget) sets what is unset and refuses a value the
    user gave otherwise; then every field still unset takes its fallback (20 epochs a round, a
    constant rate, rewinding to the warm-up, ...: the seed's meaning of a method given alone).
    Idempotent: a resolved configuration (a run's config.json) stays as it is."""
    _check_types(c)
    for key, f in _fields(c):
        value = _get(c, key)
        if f.metadata.get("path") and value is not None:
            _set(c, key, expand_path(value, flag_name(key)))
    if c.model.pretrained is not None and str(c.model.pretrained).strip().lower() not in (
            "1", "true", "imagenet", "pretrained"):
        c.model.pretrained = expand_path(c.model.pretrained, "--net_pretrained")
    for key, check in _ALONE.items():  # a value bad in itself is named as such, first
        if _get(c, key) is not None:
            _set(c, key, check(_get(c, key)))
    p = c.prune
    defaulted = p.recipe is None and p.method is None
    if defaulted:
        p.recipe = recipes.default_name(c.train.epochs)
    if p.recipe is not None:  # --prune_steps, --round_data_fraction beside a recipe: named
        t = c.train
        _apply_recipe(c, recipes.named_with(p.recipe, p.steps, t.round_data_fraction,
                                            t.round_data_choice), defaulted)
    for key, f in _fields(c):
        fallback = f.metadata.get("fallback")
        if fallback is not None and _get(c, key) is None:
            _set(c, key, fallback(c) if callable(fallback) else fallback)
    return c


def _apply_recipe(c: "RunConfig", name: str, defaulted: bool) -> None:
    """Recipe ``name``'s settings where ``c`` has none; a setting ``c`` gives otherwise, or one
    the recipe cannot run with, is refused in one line that says how to get it."""
    c.prune.recipe = name
    words = recipes.describe(name)
    for key, want in recipes.recipe_settings(name, lambda k: _get(c, k)).items():
        have = _get(c, key)
        if have is None:
            _set(c, key, want)
        elif have != want:
            flag = flag_name(key)
            if defaulted:
                raise UsageError(
                    f"{flag} {_shown(have)}: with neither --prune_method nor --recipe incop runs "
                    f"its recommended recipe {name} ({words}), which needs {flag} {_shown(want)}; "
                    f"give a method (e.g. --prune_method sap) to choose {flag} yourself")
            budget = (f", or --recipe {recipes.with_budget(name, have)} for "
                      f"{recipes.budget_words(name, have)}"
                      if key == "train.epochs" and recipes.find(name)[0].budgeted else "")
            raise UsageError(f"{flag} {_shown(have)}: recipe {name} ({words}) sets {flag} "
                             f"{_shown(want)}; drop {flag}{budget}, or give a method "
                             f"(--prune_method) instead of the recipe to choose it yourself")
    for key, (bad, why) in recipes.forbidden(name).items():
        if _get(c, key) == bad:
            flag = flag_name(key)
            raise UsageError(f"{flag} {_shown(bad)}: recipe {name} {why}; drop {flag}, or choose "
                             f"another recipe (incop list)")


def _shown(value: Any) -> str:
    if isinstance(value, bool):  # before the number: 1.0 == True
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _canonical_method(name: str) -> str:
    from .methods import METHODS

    return METHODS.canonical(name, "--prune_method")


def _positive_epochs(value: float) -> float:
    _need(_finite(value) and value > 0,
          f"--net_train_epochs {value} must be a positive number of epochs (e.g. 20 or 0.5)")
    return value


def _rewind(value: str) -> str:
    point = parse_point(value, "--rewind_to", ("warmup", "init", "none"))
    return "none" if point == "none" else value  # one spelling of none: the loop tests for it


def _ticket_rewind(value: str) -> str:
    point = parse_point(value, "--ticket_rewind", ("warmup", "init"))
    return point if isinstance(point, str) else value


def ticket_rewind(c: "RunConfig") -> str:
    """Where the ticket restarts: --ticket_rewind, else --rewind_to's point, else (with
    --rewind_to none) the end of the warm-up, as incop frontier's judge does."""
    if c.train.ticket_rewind is not None:
        return c.train.ticket_rewind
    return "warmup" if c.train.rewind_to == "none" else c.train.rewind_to


def _ratio(value: float) -> float:
    _need(_finite(value) and 0 < value < 1, f"--prune_ratio {value} must be in (0, 1)")
    return value


def _fraction(value: float) -> Optional[float]:
    _need(_finite(value) and 0 < value <= 1,
          f"--round_data_fraction {value} must be in (0, 1] (e.g. 0.3 for 30% of the training "
          f"split each round)")
    return None if value == 1 else value  # all of it: the run without the option, its run id


def _steps(value: int) -> int:
    _need(1 <= value <= recipes.MAX_STEPS,
          f"--prune_steps {value} must be between 1 and {recipes.MAX_STEPS}")
    return value


def _rounds(value: int) -> int:
    _need(value >= 1, f"--exper_imp_total_iter {value} must be at least 1")
    return value


# The settings a recipe may set, checked alone before it is applied (so that a bad value is
# named as bad, not as a clash with the recipe), each returning its one spelling
_ALONE = {"prune.method": _canonical_method, "train.epochs": _positive_epochs,
          "train.lr_schedule": lambda v: _chosen("train.lr_schedule", v),
          "train.rewind_to": _rewind,
          "train.ticket_rewind": _ticket_rewind, "prune.ratio": _ratio,
          "experiment.imp_total_iter": _rounds, "prune.steps": _steps,
          "train.round_data_fraction": _fraction,
          "train.round_data_choice": lambda v: _chosen("train.round_data_choice", v),
          "prune.gmp_lr": lambda v: _chosen("prune.gmp_lr", v)}


def _chosen(key: str, value: str) -> str:
    """``value`` if it is one of the values setting ``key`` takes, else one line naming them."""
    section, name = key.split(".")
    f = _section_class(section).__dataclass_fields__[name]
    _need(value in choices_of(f), f"--{f.metadata['flag']} {value}: choose "
          f"{one_of(choices_of(f))}")
    return value


def _check_choices(c: "RunConfig") -> None:
    """Every setting with fixed values (``choices`` given as a tuple) holds one of them; those
    named from a registry are checked, and spelled, by the registry."""
    for section in RunConfig.SECTIONS:
        for f in dataclasses.fields(_section_class(section)):
            value = getattr(getattr(c, section), f.name)
            if isinstance(f.metadata.get("choices"), tuple) and value is not None:
                _chosen(f"{section}.{f.name}", value)


def _check_types(c: "RunConfig") -> None:
    """Each value of the type its field declares (a number, not the text "0.05"; a whole
    number for a count; true or false for a switch); None only where a field may be unset; no
    control characters in a text (a newline in a path would end a line of a Slurm script)."""
    for section in RunConfig.SECTIONS:
        cls, value = _section_class(section), getattr(c, section)
        _need(isinstance(value, cls), f"RunConfig.{section} must be a {cls.__name__} (e.g. "
                                      f"RunConfig({section}={cls.__name__}(...))), not "
                                      f"{type(value).__name__}")
    for key, f in _fields(c):
        value, kind = _get(c, key), str(f.type)
        if value is None:
            _need("Optional" in kind, f"{flag_name(key)} is None; give it a value")
            continue
        _need(_of_type(value, kind), f"{flag_name(key)} must be {_type_words(kind)}, not "
                                     f"{short_repr(value)}")
        for text in value if isinstance(value, (list, tuple)) else [value]:
            _need(not (isinstance(text, str) and _CONTROL.search(text)),
                  f"{flag_name(key)} {short_repr(text)} holds a control character (a newline, "
                  f"tab or NUL); give it without one")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, computed from a bounded part of it: a
    value from a file may be huge, nest deep or hold itself."""
    from ..base.bounded import short_repr as bounded_repr

    return bounded_repr(value, limit)


def _of_type(value: Any, kind: str) -> bool:
    number = lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)
    if "List[" in kind:
        item = kind.split("List[", 1)[1]
        return isinstance(value, (list, tuple)) and all(
            number(v) if item.startswith("float") else isinstance(v, str) for v in value)
    if "bool" in kind:
        return isinstance(value, bool)
    if "float" in kind:
        return number(value)
    if "int" in kind:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, str)


def _type_words(kind: str) -> str:
    if "List[" in kind:
        return "a list of " + ("numbers" if "List[float" in kind else "names")
    for word, text in (("bool", "true or false"), ("float", "a number"),
                       ("int", "a whole number")):
        if word in kind:
            return text
    return "a text value"


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _plain_name(name: str) -> bool:
    return bool(name.strip()) and name not in (".", "..") and "/" not in name and "\\" not in name


def _finite(x: Optional[float]) -> bool:
    return x is not None and math.isfinite(x)


def _validate(c: RunConfig, registry_names: bool = True) -> None:
    from ..data.datasets import DATASETS
    from ..pruning.rules import RULES
    from ..stopping.criteria import CRITERIA
    from ..models.architectures import MODELS

    if registry_names:
        c.data.dataset = DATASETS.canonical(c.data.dataset, "--net_dataset")
        c.model.arch = MODELS.canonical(c.model.arch, "--net_arch")
    if c.prune.rule is not None:
        c.prune.rule = RULES.canonical(c.prune.rule, "--prune_rule")
    if c.prune.criterion is not None:
        c.prune.criterion = CRITERIA.canonical(c.prune.criterion, "--stop_criterion")
    _check_choices(c)
    t, p, e = c.train, c.prune, c.experiment
    _need(c.data.batch_size >= 1, f"--net_batch_size {c.data.batch_size} must be at least 1")
    _need(_finite(c.data.val_size) and c.data.val_size > 0
          and (c.data.val_size < 1 or float(c.data.val_size).is_integer()),
          f"--net_val_size {c.data.val_size} must be a fraction in (0, 1) or a whole number of "
          f"samples")
    _need(c.data.val_size != 1,
          "--net_val_size 1 would be a single validation sample: a fraction must be below 1 "
          "(0.1 is 10% of the training data) and a count is a number of samples (e.g. 5000)")
    _need(c.data.val_size < 1 or c.data.val_size >= MIN_VAL_SAMPLES or c.data.allow_small_val,
          f"--net_val_size {c.data.val_size:g} samples is too few to measure accuracy (under "
          f"{MIN_VAL_SAMPLES}); use more, or add --allow_small_val if you mean it")
    if c.model.pretrained is not None and str(c.model.pretrained).strip().lower() in (
            "1", "true", "imagenet", "pretrained"):
        c.model.pretrained = "imagenet"  # the seed's spelling, one meaning, one run id
    _need(_finite(t.lr) and 0 < t.lr <= MAX_RATE,
          f"--net_lr {t.lr} must be a positive number up to {MAX_RATE:g} (e.g. 0.01)")
    _need(t.optimizer == "sgd" or t.momentum == 0,
          f"--net_momentum {t.momentum} applies to sgd; {t.optimizer} has its own moment "
          f"estimates: drop --net_momentum or use --net_optimizer sgd")
    _need(t.lr_warmup_iters >= 0,
          f"--net_lr_warmup_iters {t.lr_warmup_iters} must be 0 (none) or more iterations")
    _need(not t.lr_allr or t.lr_schedule == "linear",
          f"--net_lr_allr sets the start of a linear decay; add --net_lr_schedule linear "
          f"(not {t.lr_schedule})")
    _need(t.lr_schedule != "step" or bool(t.lr_milestones),
          "--net_lr_schedule step needs --net_lr_milestones (epochs of a round, e.g. 10 15)")
    _need(t.lr_schedule == "step" or t.lr_milestones is None,
          f"--net_lr_milestones applies to --net_lr_schedule step, not {t.lr_schedule}, which "
          f"would ignore it; add --net_lr_schedule step or drop the milestones")
    _need(t.lr_milestones is None or all(_finite(m) and m > 0 for m in t.lr_milestones),
          f"--net_lr_milestones {t.lr_milestones} must be positive epochs")
    _need(_finite(t.lr_gamma) and 0 < t.lr_gamma <= MAX_RATE,
          f"--net_lr_gamma {t.lr_gamma} must be positive, up to {MAX_RATE:g}")
    _need(e.threads is None or e.threads >= 1, f"--threads {e.threads} must be at least 1")
    _need(_finite(t.ticket_epochs) and t.ticket_epochs >= 0,
          f"--ticket_epochs {t.ticket_epochs} must be 0 (no ticket) or a positive number of epochs")
    rewind = parse_point(t.rewind_to, "--rewind_to", ("warmup", "init", "none"))
    # before the ticket's point, which --rewind_to gives when --ticket_rewind is unset
    _need(not isinstance(rewind, tuple) or rewind[1] != "ep" or rewind[0] <= t.warmup,
          f"--rewind_to {t.rewind_to} is after the end of the {t.warmup}-epoch warm-up; rewind "
          f"to a point inside it (or raise --net_warmup)")
    _need(t.ticket_rewind is None or t.ticket_epochs > 0,
          f"--ticket_rewind {t.ticket_rewind} says where the ticket restarts, and there is no "
          f"ticket: add --ticket_epochs E, or drop --ticket_rewind")
    ticket = parse_point(ticket_rewind(c), "--ticket_rewind", ("warmup", "init"))
    _need(not isinstance(ticket, tuple) or ticket[1] != "ep" or ticket[0] <= t.warmup,
          f"--ticket_rewind {t.ticket_rewind} is after the end of the {t.warmup}-epoch warm-up; "
          f"restart the ticket from a point inside it (or raise --net_warmup)")
    _need(not t.lr_allr or rewind == "none",
          "--net_lr_allr scales each round's rate by how far pruning moved the trained "
          "weights, which only --rewind_to none goes on training: add --rewind_to none")
    parse_point(c.prune.check_every, "--check_every")
    _need(t.warmup >= 0, f"--net_warmup {t.warmup} must be 0 or more")
    _need(_finite(t.momentum) and 0 <= t.momentum < 1, f"--net_momentum {t.momentum} must be in [0, 1)")
    _need(_finite(t.weight_decay) and t.weight_decay >= 0,
          f"--net_weight_decay {t.weight_decay} must be 0 or more")
    for _, make_rule in RULES.items():  # each rule checks its own settings as it is made
        make_rule(p)
    _need(p.epsilon is None or (_finite(p.epsilon) and p.epsilon >= 0),
          f"--prune_epsilon {p.epsilon} must be a number >= 0")
    _need(p.flow_probe_size is None or p.flow_probe_size >= 1, f"--flow_probe_size {p.flow_probe_size} must be at least 1")
    _need(p.target_remaining is None or (_finite(p.target_remaining)
                                         and 0 < p.target_remaining < 100),
          f"--prune_target_remaining {p.target_remaining} must be a percentage in (0, 100)")
    _validate_keep_at(c)
    _validate_gmp(c)
    _validate_steps(c)
    _validate_schedule(c)
    _need(t.round_data_choice == "random" or t.round_data_fraction is not None,
          f"--round_data_choice {t.round_data_choice} chooses a part of the training split: "
          f"give --round_data_fraction below 1 (e.g. --round_data_fraction 0.3)")
    _need(abs(e.seed) <= MAX_SEED, f"--seed {e.seed} must be between -2**40 and 2**40 (each "
          f"round's seed is derived from it and must fit in 64 bits)")
    _need(c.data.image_size is None or 1 <= c.data.image_size <= MAX_IMAGE_SIZE,
          f"--net_image_size {c.data.image_size} must be between 1 and {MAX_IMAGE_SIZE} pixels")
    _need(e.num_trial >= 1, f"--exper_num_trial {e.num_trial} must be at least 1")
    _need(e.gpu_id is None or e.gpu_id >= 0, f"--exper_gpu_id {e.gpu_id} must be 0 or more")
    _need(bool(e.output_dir and e.output_dir.strip()),
          "--output_dir is empty; name a folder for the results (default: output)")
    _need(e.run_name is None or _plain_name(e.run_name),
          f"--run_name {e.run_name!r} must be a plain folder name (no '/', not '.' or '..'), so "
          f"the run stays inside --output_dir")
    for flag, patterns in (("--prune_include", p.include), ("--prune_exclude", p.exclude)):
        _need(patterns is None or (len(patterns) > 0 and all(isinstance(x, str) and x.strip()
                                                              for x in patterns)),
              f"{flag} needs one or more name patterns, e.g. 'fc3' or 'encoder.*'")


def _validate_keep_at(c: "RunConfig") -> None:
    """--prune_keep_at: percentages in (0, 100) above the final target, once each; kept
    largest first (the order the search reaches them)."""
    p = c.prune
    if not p.keep_at:
        p.keep_at = None
        return
    shown = lambda x: f"{x:g}" if _finite(x) else str(x)
    on_the_way = " ".join(shown(x) for x in p.keep_at)
    _need(p.target_remaining is not None,
          f"targets {on_the_way} on the way ({flag_name('prune.keep_at')}) need the final, "
          f"smallest target ({flag_name('prune.target_remaining')}) beside them")
    bad = [shown(x) for x in p.keep_at if not (_finite(x) and 0 < x < 100)]
    _need(not bad, f"target {', '.join(bad)}: a target is a percentage of the weights in "
                   f"(0, 100)")
    _need(len(set(p.keep_at)) == len(p.keep_at) and p.target_remaining not in p.keep_at,
          f"targets {on_the_way} {p.target_remaining:g}: a target is given twice")
    _need(all(x > p.target_remaining for x in p.keep_at),
          f"targets {on_the_way} on the way ({flag_name('prune.keep_at')}) must all be above "
          f"the final {flag_name('prune.target_remaining')} {p.target_remaining:g} (the search "
          f"reaches them first)")
    _need(p.recipe != "oneshot", f"recipe oneshot prunes once and lands on one target, not "
                                 f"{len(p.keep_at) + 1}: run oneshot once per target")
    p.keep_at = sorted((float(x) for x in p.keep_at), reverse=True)


def _validate_gmp(c: "RunConfig") -> None:
    """--prune_method gmp is one training run whose sparsity follows a schedule: it needs its
    three points and a target, and takes no stopping rule, SAP sizing or per-round rate."""
    p, t = c.prune, c.train
    points = {"--gmp_start": p.gmp_start, "--gmp_end": p.gmp_end, "--gmp_every": p.gmp_every}
    if p.method != "gmp":
        given = [flag for flag, v in points.items() if v is not None]
        if p.gmp_lr not in (None, "run"):
            given.append(f"--gmp_lr {p.gmp_lr}")
        _need(not given, f"{', '.join(given)} set the schedule of --prune_method gmp, not "
                         f"{p.method}: add --prune_method gmp or drop them")
        return
    missing = [flag for flag, v in points.items() if v is None]
    _need(not missing, f"--prune_method gmp needs {', '.join(missing)} (e.g. --gmp_start 1ep "
                       f"--gmp_end 6ep --gmp_every 0.5ep)")
    parse_point(p.gmp_start, "--gmp_start", ("start",))
    parse_point(p.gmp_end, "--gmp_end")
    parse_point(p.gmp_every, "--gmp_every")
    named = "recipe gmp" if p.recipe == "gmp" else "--prune_method gmp"
    _need(p.target_remaining is not None,
          f"{named} prunes to --prune_target_remaining (e.g. 10): add it")
    _need(p.rule in (None, "layerwise", "global"),
          f"--prune_rule {p.rule}: gradual magnitude pruning is layerwise or global")
    _need(p.criterion in (None, "fixed"),
          f"--stop_criterion {p.criterion}: gradual magnitude pruning trains its schedule to the "
          f"end; drop --stop_criterion")
    _need(p.gmp_lr != "restart" or t.lr_schedule in ("linear", "cosine"),
          f"{'recipe ' + p.recipe if p.recipe else '--gmp_lr restart'} restarts "
          f"--net_lr_schedule's decay at every pruning step, and {t.lr_schedule} does not decay "
          f"within a step: give --net_lr_schedule linear (or cosine)")
    _need(not t.lr_allr, "--net_lr_allr restarts a rate every round, and gradual magnitude "
                         "pruning is one run with one schedule: drop --net_lr_allr")
    _need(t.round_data_fraction is None,
          f"--round_data_fraction {t.round_data_fraction}: gradual magnitude pruning is one run "
          f"whose steps are counted in iterations; give it fewer "
          f"{'epochs (a smaller gmp-K)' if p.recipe else '--net_train_epochs'} instead")


def _validate_steps(c: "RunConfig") -> None:
    """--prune_steps N: N steps to a target, in N + 1 rounds (round 0 trains the dense
    network), by magnitude; gradual pruning has steps of its own."""
    p, n = c.prune, c.prune.steps
    if n is None:
        return
    named = f"--prune_steps {n}" + (f" (recipe {p.recipe})" if p.recipe else "")
    _need(p.target_remaining is not None,
          f"{named} reaches --prune_target_remaining in {n} equal steps: add it (e.g. "
          f"--prune_target_remaining 5)")
    _need(p.method != "gmp", f"--prune_steps {n}: gradual magnitude pruning takes its steps "
                             f"from --gmp_start, --gmp_end and --gmp_every; drop --prune_steps")
    _need(c.experiment.imp_total_iter == n + 1,
          f"--exper_imp_total_iter {c.experiment.imp_total_iter}: --prune_steps {n} takes "
          f"exactly {n + 1} rounds (round 0 trains the dense network); drop "
          f"--exper_imp_total_iter")


def _validate_schedule(c: "RunConfig") -> None:
    """--prune_schedule names a schedule of ``SPARSITY_SCHEDULES``; one the other settings imply
    anyway is the run without it (one run id), and one they contradict is refused."""
    from ..pruning.sparsity_schedules import SPARSITY_SCHEDULES, implied_schedule

    p = c.prune
    if p.schedule is None:
        return
    p.schedule = SPARSITY_SCHEDULES.canonical(p.schedule, "--prune_schedule")
    implied = implied_schedule(p.method, p.steps)
    if p.schedule == implied:
        p.schedule = None
        return
    _need(p.schedule != "cubic", "--prune_schedule cubic is gradual magnitude pruning's: use "
                                 "--prune_method gmp (or --recipe gmp)")
    _need(p.schedule != "steps", "--prune_schedule steps needs --prune_steps N")
    _need(p.method != "gmp", f"--prune_method gmp prunes on its own cubic schedule: drop "
                             f"--prune_schedule {p.schedule}")
    _need(p.schedule != "rounds", "--prune_schedule rounds sizes each step by the rule and "
                                  "--prune_steps makes equal steps: keep one")


def with_recipe(cfg: RunConfig, name: Optional[str] = None) -> RunConfig:
    """A copy of RunConfig ``cfg`` running recipe ``name`` (default: what a run that names no
    method runs, the recommended recipe), validated, every setting resolved. The settings
    ``cfg`` leaves unset (None) are the recipe's; one ``cfg`` sets otherwise is refused in one
    line, as the command line refuses it."""
    out = copy.deepcopy(cfg)
    with api_errors():
        if name is not None:
            out.prune.recipe = name
        elif out.prune.method is not None and out.prune.recipe is None:
            raise UsageError(f"with_recipe: PruneConfig.method is {out.prune.method!r} and no "
                             f"recipe is named: name one (with_recipe(cfg, 'allr-2')), or leave "
                             f"the method unset for the recommended recipe")
        return out.validate(registry_names=False)


BASELINES = _baselines()
