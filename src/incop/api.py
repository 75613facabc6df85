"""The Python entry point: prune any ``nn.Module`` with any data, then check its ticket.

    import incop
    cfg = incop.RunConfig(train=incop.TrainConfig(ticket_epochs=5),
                          prune=incop.PruneConfig(target_remaining=10))  # allr-2, to 10%
    result = incop.prune_model(model, (x_train, y_train), (x_val, y_val), (x_test, y_test), cfg)
    result.model          # trained, pruned model (plain weights, zeros where pruned)
    result.masks          # incop.Masks, keyed by parameter name
    result.rounds         # per-round history; result.notes: what a reader must know
    incop.ablate(result)  # is the ticket a ticket? a random mask and a fresh init beside it

Errors name the configuration's fields (``PruneConfig.target_remaining``), never flags.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from .base.errors import UsageError
from .config.schema import RunConfig, api_errors, api_name, api_words
from .data.batches import DataSource, is_tensor_pair, probe_from_source
from .stopping.flows import unwrap
from .engine.imp import IMPExperiment
from .engine.runtime import resolve_device
from .launch.session import experiment as observed
from .engine.trial_inputs import TrialInputs
from .data.checks import check_inputs
from .config.identity import data_fingerprint, model_fingerprint
from .pruning.masks import Masks
from .pruning.sparsity_schedules import landed
from .engine.events import Observer
from .runs.directory import run_path
from .runs.layout import model_state, round_masks
from .pruning.torch_prune import remove_reparametrization, to_torch_prune


@dataclass
class _Inputs:
    """What a run of prune_model was given, kept so that its tickets can be ablated: the model
    as it was (a copy), its data on the run's device, and each trial's ticket start and final
    mask while they are in memory."""

    model: nn.Module
    train: DataSource
    val: DataSource
    test: Optional[DataSource]
    device: torch.device
    trials: Dict[int, Tuple[Dict[str, torch.Tensor], Masks]] = field(default_factory=dict)


@dataclass
class PruneResult:
    """The outcome of :func:`prune_model`."""

    model: nn.Module
    """The last trial's pruned model after its final round (plain weights, zeros where pruned)."""
    masks: Masks
    """The final masks, keyed by parameter name (``fc1.weight``)."""
    rounds: List[Dict[str, Any]] = field(default_factory=list)
    """Per trial and round: remaining weights, epochs, stop reason, accuracies, distances, times."""
    epochs: List[Dict[str, Any]] = field(default_factory=list)
    """Per check: train loss, validation accuracy, the criterion's distance, times."""
    run_dir: Optional[Path] = None
    tickets: List[Dict[str, Any]] = field(default_factory=list)
    """With ``TrainConfig.ticket_epochs``: per trial, the final mask retrained from
    ``TrainConfig.ticket_rewind``'s point (its accuracy and cost, apart from the search's)."""
    ticket_model: Optional[nn.Module] = None
    """The last trial's ticket, when it was trained in this call."""
    notes: List[str] = field(default_factory=list)
    """What a reader must know of the run: a target sparsity not reached, a criterion that
    measured nothing, a search on an untrained network (the command line's NOTE lines)."""
    config: Optional[RunConfig] = None
    """The configuration the run used, every setting resolved (the recipe's included)."""
    target_reached: Optional[bool] = None
    """With ``PruneConfig.target_remaining``: whether every trial reached it (see notes)."""
    ablations: List[Dict[str, Any]] = field(default_factory=list)
    """:func:`ablate`'s rows, once it ran on this result."""
    landings: Dict[float, "Landing"] = field(default_factory=dict)
    """With ``PruneConfig.keep_at``: each target (the final one too) -> the last trial's round
    that landed on it, its network and masks (every sparsity from one search)."""
    _inputs: Optional[_Inputs] = field(default=None, repr=False, compare=False)

    @property
    def remaining_fraction(self) -> float:
        return self.masks.remaining_fraction()

    def torch_prune_model(self) -> nn.Module:
        """A copy in ``torch.nn.utils.prune`` form (``weight_orig`` / ``weight_mask``)."""
        return to_torch_prune(copy.deepcopy(self.model), self.masks)

    def plain_state_dict(self) -> Dict[str, torch.Tensor]:
        """Plain weights with zeros: loads into an unpruned model of the same class."""
        return remove_reparametrization(copy.deepcopy(self.model)).state_dict()


def prune_model(model: nn.Module, train: DataSource, val: DataSource,
                test: Optional[DataSource] = None, config: Optional[RunConfig] = None, *,
                probe: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                output_dir: Optional[Union[str, Path]] = None, progress: Optional[bool] = None,
                echo: Optional[Callable[[str], None]] = print) -> PruneResult:
    """Run the whole IMP search (warm-up, rounds of prune / rewind / train) on ``model``.

    Args:
        model: any module with Conv/Linear layers; it is copied, never modified.
        train, val, test: ``(x, y)`` tensor pairs or iterables of ``(x, y)`` batches such as
            DataLoaders. Validation data decides early stopping; test data is only reported.
        config: method, pruning, training and experiment settings. By default (and for every
            field a RunConfig you build leaves unset) what ``incop run`` does with no method:
            the recommended recipe (``PruneConfig.recipe``, ``allr-2``) for 5 rounds, or until
            ``PruneConfig.target_remaining`` is reached. A method you set
            (``PruneConfig(method="ciap")``) means what the command line's ``--prune_method``
            means. ``config.data`` and ``config.model`` are ignored except
            ``data.batch_size`` (used for tensor pairs).
        probe: ``(x, y)`` used to measure flows; by default a seeded subset of ``train`` of
            ``config.prune.flow_probe_size`` samples (2048).
        output_dir: if given, a run directory (metrics, masks, figures, resume) is written below it.
        progress: progress bars (None: on a terminal only).
        echo: where the run's lines go, as the command line prints them (default: print;
            ``None`` or ``lambda line: None`` for silence).

    Each trial starts from the same initial weights; trials differ in their seeds (shuffling,
    dropout, probe set). A bad setting or input is one ``incop.UsageError`` naming the field.
    """
    with api_errors():
        return _prune_model(model, train, val, test, config, probe, output_dir, progress, echo)


def _prune_model(model, train, val, test, config, probe, output_dir, progress, echo):
    cfg = copy.deepcopy(config) if config is not None else RunConfig()
    if not isinstance(cfg, RunConfig):
        raise UsageError(f"config must be an incop.RunConfig, not {type(cfg).__name__}")
    if not isinstance(model, nn.Module):
        raise UsageError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    model = unwrap(model)  # a torch.compile'd model: prune the module it wraps
    cfg.model.arch, cfg.data.dataset = type(model).__name__, "custom"
    if output_dir is not None:
        cfg.experiment.output_dir = str(output_dir)
    cfg.validate(registry_names=False)
    check_inputs(model, train, val, test, cfg.data.allow_small_val)
    # A run's identity includes the model and the data: another model or data set never
    # receives this run's results, nor resumes it.
    cfg.model.fingerprint = model_fingerprint(model)
    cfg.data.fingerprint = data_fingerprint(train, val, test)
    device = resolve_device(cfg.experiment.device, cfg.experiment.gpu_id)
    original = copy.deepcopy(model)
    train, val, test = (_on_device(s, device) for s in (train, val, test))

    def inputs(trial: int, seed: int) -> TrialInputs:
        trial_probe = probe if probe is not None else probe_from_source(
            train, cfg.prune.flow_probe_size, seed)
        return TrialInputs(copy.deepcopy(model), train, val, test, trial_probe)

    experiment = observed(cfg, run_path(cfg) if output_dir is not None else None,
                          progress=progress, echo=echo or (lambda s: None), inputs=inputs,
                          name=api_name)
    keeper = _LandingKeeper([*(cfg.prune.keep_at or ()), cfg.prune.target_remaining]
                            if cfg.prune.keep_at else [])
    if cfg.prune.keep_at:
        experiment.observe(keeper)
    results = experiment.run()
    if results:
        final_model, final_masks = results[-1].model, results[-1].masks
    else:  # the run in output_dir was already finished: read its result back
        final_model, final_masks = _saved_result(model, experiment)
    kept = _Inputs(original, train, val, test, device,
                   {r.warmup["trial"]: (r.ticket_start, r.masks) for r in results})
    return PruneResult(final_model, final_masks, experiment.rounds, experiment.epochs,
                       experiment.run_dir.path if experiment.run_dir else None,
                       experiment.records.tickets, results[-1].ticket if results else None,
                       notes=_notes(experiment), config=cfg,
                       target_reached=_target_reached(experiment, cfg), _inputs=kept,
                       landings=keeper.landings())


@dataclass
class Landing:
    """Where a search through several targets landed on one: its round, the search's epochs up
    to it, and the network (plain weights, zeros where pruned) and masks of that round."""

    round: int
    epochs: float
    model: nn.Module
    masks: Masks


class _LandingKeeper(Observer):
    """Keeps a copy of each round's network that landed exactly on a target, for the API
    (a run directory keeps every round's anyway)."""

    def __init__(self, targets) -> None:
        self.targets, self.kept, self.epochs = [float(t) for t in targets], {}, {}

    def round_ended(self, trial, k, rows, model, masks, state) -> None:
        record = rows["round"]
        self.epochs[trial] = (self.epochs.get(trial, 0.0) if k > 0 else 0.0) + record["epochs"]
        for t, hit in landed([{**record, "round": k}], self.targets).items():
            if hit is not None:  # the same test as the run's records are read with
                self.kept[t] = (trial, Landing(k, self.epochs[trial], copy.deepcopy(model),
                                               masks.clone()))

    def landings(self) -> Dict[float, Landing]:
        last = max((trial for trial, _ in self.kept.values()), default=None)
        return {t: landing for t, (trial, landing) in self.kept.items() if trial == last}


def _on_device(source: Optional[DataSource], device: torch.device) -> Optional[DataSource]:
    if source is not None and is_tensor_pair(source):
        return tuple(t.to(device) for t in source)
    return source


def _notes(experiment: IMPExperiment) -> List[str]:
    if experiment.notes or experiment.run_dir is None:
        return list(experiment.notes)
    from .runs.reading import read_json
    from .runs.layout import SUMMARY_FILE

    notes = read_json(experiment.run_dir.path / SUMMARY_FILE).get("notes")  # finished before
    return [n for n in notes if isinstance(n, str)] if isinstance(notes, list) else []


def _target_reached(experiment: IMPExperiment, cfg: RunConfig) -> Optional[bool]:
    from .engine.estimate import target_report

    report = target_report(experiment.rounds, cfg.prune.target_remaining,
                           cfg.experiment.imp_total_iter, api_name)
    return None if report is None else report["reached"]


def _saved_result(model: nn.Module, experiment: IMPExperiment) -> Tuple[nn.Module, Masks]:
    last = experiment.rounds[-1]
    path = experiment.run_dir.path
    saved = copy.deepcopy(model)
    saved.load_state_dict(model_state(path, last["trial"], last["round"]))
    masks = Masks.from_state_dict(round_masks(path, last["trial"], last["round"]))
    return saved.to(experiment.device), masks.bind(saved)


def ablate(run: Union[PruneResult, str, Path], random_prune: bool = True,
           random_reinit: bool = True, trials: int = 1, trial: Optional[int] = None,
           progress: Optional[bool] = None, echo: Optional[Callable[[str], None]] = print, *,
           model: Optional[nn.Module] = None, train: Optional[DataSource] = None,
           val: Optional[DataSource] = None, test: Optional[DataSource] = None,
           reinit: Optional[Callable[[], nn.Module]] = None) -> List[Dict[str, Any]]:
    """The lottery-ticket ablations of a ticket (as ``incop ablate``): ``trials`` retrainings
    of a random mask with the ticket's per-layer counts from the ticket's start, and of the
    ticket's mask from a fresh initialisation, each with the ticket's budget, schedule and data
    order. Returns every ablation row of the run (those already computed are not computed
    again); the command line's verdict lines go to ``echo``.

    ``run`` is a :class:`PruneResult` of a run with ``TrainConfig.ticket_epochs`` (its model and
    data are the ones prune_model was given; rows also go to ``result.ablations`` and, with an
    ``output_dir``, to the run directory), or a run directory: one of incop's own models and
    datasets, or one made by prune_model, given the same ``model`` (as it was before pruning)
    and ``train``/``val``/``test`` data, which are checked against the run's fingerprints.
    A fresh initialisation calls every layer's ``reset_parameters()``; ``reinit``, a function
    returning a new model, replaces that for models whose weights have no such method."""
    with api_errors():
        kinds = [k for k, on in (("random_prune", random_prune),
                                 ("random_reinit", random_reinit)) if on]
        if not kinds:
            raise UsageError("ablate: ask for random_prune, random_reinit or both")
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise UsageError(f"ablate: trials={trials!r} must be a whole number, at least 1")
        say = (lambda line: echo(api_words(line))) if echo else (lambda line: None)
        if isinstance(run, PruneResult):
            return _ablate_result(run, kinds, trials, trial, progress, say, reinit)
        from .launch.ablate import ablate_run

        given = [x is not None for x in (model, train, val)]
        if not any(given) and test is None:
            return ablate_run(Path(run), kinds, trials, trial, say, progress)
        if not all(given):
            raise UsageError("ablate: a run of your own model needs model, train and val (and "
                             "test, if the run had one), as prune_model was given them")
        inputs, fresh = _own_inputs(Path(run), model, train, val, test, reinit)
        return ablate_run(Path(run), kinds, trials, trial, say, progress, inputs, fresh)


def _own_inputs(run: Path, model, train, val, test, reinit):
    """The inputs of a run made by prune_model, from the model and data given again, which
    must be the ones the run was made with (its fingerprints)."""
    from .runs.layout import existing_run
    from .runs.reading import run_config

    cfg = RunConfig.from_dict(run_config(existing_run(run)))
    if not cfg.model.fingerprint:
        raise UsageError(f"ablate: {run} is a run of incop's own model and dataset "
                         f"({cfg.model.arch}/{cfg.data.dataset}); call incop.ablate(run_dir) "
                         f"without model and data")
    model = unwrap(model)
    if model_fingerprint(model) != cfg.model.fingerprint:
        raise UsageError(f"ablate: this model is not the one {run} was made with (its type, "
                         f"parameters or initial weights differ); pass the model as it was "
                         f"given to prune_model, before pruning")
    if data_fingerprint(train, val, test) != cfg.data.fingerprint:
        raise UsageError(f"ablate: this data is not what {run} was made with; pass the same "
                         f"train, val and test as prune_model was given")
    device = resolve_device(cfg.experiment.device, cfg.experiment.gpu_id)
    kept = _Inputs(copy.deepcopy(model), *(_on_device(x, device) for x in (train, val, test)),
                   device)
    return _factories(kept, reinit)


def _factories(kept: _Inputs, reinit):
    def inputs(trial: int, seed: int) -> TrialInputs:
        return TrialInputs(copy.deepcopy(kept.model), kept.train, kept.val, kept.test, None)

    def fresh(trial: int, seed: int) -> TrialInputs:  # under the ablation's seed (set first)
        return TrialInputs(fresh_model(kept.model, reinit), kept.train, kept.val, kept.test,
                           None)

    return inputs, fresh


def fresh_model(model: nn.Module, reinit: Optional[Callable[[], nn.Module]] = None) -> nn.Module:
    """``model`` initialised anew from the current random state: ``reinit()`` (checked to have
    the same parameters), or a copy whose layers draw their weights again with their own
    ``reset_parameters()``. A weight no layer can draw again is refused in one line."""
    if reinit is not None:
        new = reinit()
        if not isinstance(new, nn.Module):
            raise UsageError(f"ablate: reinit() returned {type(new).__name__}, not a model")
        mine = {n: tuple(p.shape) for n, p in model.named_parameters()}
        theirs = {n: tuple(p.shape) for n, p in unwrap(new).named_parameters()}
        if mine != theirs:
            raise UsageError("ablate: reinit() returned a model with other parameters (names "
                             "or shapes) than the run's; return a new model of the same class")
        return unwrap(new)
    new = copy.deepcopy(model)
    drawn = set()
    for module in new.modules():
        reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters",
                                                                     None)
        if callable(reset):
            reset()
            drawn.update(id(p) for p in module.parameters(recurse=False))
    stuck = [n for n, p in new.named_parameters() if p.dim() > 1 and id(p) not in drawn]
    if stuck:
        raise UsageError(f"ablate: a fresh initialisation draws every weight again, and "
                         f"{stuck[0]} belongs to a module with no reset_parameters(); pass "
                         f"reinit=lambda: YourModel() (a new, randomly initialised model)")
    return new


def _ablate_result(result: PruneResult, kinds, trials: int, only: Optional[int], progress,
                   say, reinit) -> List[Dict[str, Any]]:
    """A PruneResult's tickets ablated with the model and data prune_model was given."""
    from .engine.ablations import Ablations
    from .engine.events import Observers
    from .engine.progress import ProgressBars
    from .launch.ablate import (_tickets, ablate_run, ablate_tickets, restarts_after_warmup,
                                summary_lines)

    if not result.tickets:
        raise UsageError("ablate: the run trained no ticket to compare with; set "
                         "TrainConfig.ticket_epochs (e.g. 5) and run prune_model again")
    kept = result._inputs
    if kept is None:
        raise UsageError("ablate: this PruneResult does not hold the model and data it was "
                         "made with; pass the run directory with model, train and val")
    inputs, fresh = _factories(kept, reinit)
    if result.run_dir is not None:
        result.ablations = ablate_run(result.run_dir, kinds, trials, only, say, progress,
                                      inputs, fresh)
        return result.ablations
    tickets = _tickets(result.tickets, only, "this result")
    missing = [t for t in tickets if t not in kept.trials]
    if missing:
        raise UsageError(f"ablate: trial {missing[0]}'s ticket start is not in this result; "
                         f"give prune_model an output_dir to keep every trial's")
    cfg = result.config
    events = Observers([ProgressBars(None if progress is None else not progress)])
    ablations = Ablations(cfg, inputs, kept.device, events, fresh)
    try:
        result.ablations = ablate_tickets(ablations, tickets, lambda t: kept.trials[t][0],
                                          lambda t: kept.trials[t][1], kinds, trials,
                                          result.ablations,
                                          lambda rows: setattr(result, "ablations", rows), say)
    finally:
        events.closed()
    for line in summary_lines(result.ablations, restarts_after_warmup(cfg, [])):
        say(line)
    return result.ablations
