"""The Python entry point: prune any ``nn.Module`` with any data.

    import incop
    cfg = incop.RunConfig(prune=incop.PruneConfig(method="ciap"),
                          experiment=incop.ExperimentConfig(imp_total_iter=5))
    result = incop.prune_model(model, (x_train, y_train), (x_val, y_val), (x_test, y_test), cfg)
    result.model          # trained, pruned model (plain weights, zeros where pruned)
    result.masks          # incop.Masks, keyed by parameter name
    result.rounds         # per-round history
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from .base.errors import UsageError
from .config.recipes import with_recipe
from .config.schema import RunConfig, api_name
from .data.batches import DataSource, is_tensor_pair, probe_from_source
from .stopping.flows import unwrap
from .engine.imp import IMPExperiment
from .engine.runtime import resolve_device
from .launch.session import experiment as observed
from .engine.trial_inputs import TrialInputs
from .data.checks import check_inputs
from .config.identity import data_fingerprint, model_fingerprint
from .pruning.masks import Masks
from .runs.directory import run_path
from .runs.layout import model_state, round_masks
from .pruning.torch_prune import remove_reparametrization, to_torch_prune


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
    """With ``config.train.ticket_epochs``: per trial, the final mask retrained from the rewind
    point (its accuracy and cost, apart from the search's)."""
    ticket_model: Optional[nn.Module] = None
    """The last trial's ticket, when it was trained in this call."""

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
                output_dir: Optional[Union[str, Path]] = None, progress: bool = False,
                echo: Optional[Callable[[str], None]] = None) -> PruneResult:
    """Run the whole IMP search (warm-up, rounds of prune / rewind / train) on ``model``.

    Args:
        model: any module with Conv/Linear layers; it is copied, never modified.
        train, val, test: ``(x, y)`` tensor pairs or iterables of ``(x, y)`` batches such as
            DataLoaders. Validation data decides early stopping; test data is only reported.
        config: method, pruning, training and experiment settings. By default, what
            ``incop run`` runs with no method: ``with_recipe(RunConfig())``, the recommended
            recipe (``incop.config.recipes.DEFAULT_RECIPE``) for 5 rounds. A RunConfig you
            build means what its fields say (PruneConfig's method field defaults to ciap).
            ``config.data`` and ``config.model`` are ignored except ``data.batch_size`` (used
            for tensor pairs).
        probe: ``(x, y)`` used to measure flows; by default a seeded subset of ``train`` of
            ``config.prune.flow_probe_size`` samples (2048).
        output_dir: if given, a run directory (metrics, masks, figures, resume) is written below it.
        progress: show progress bars.
        echo: where progress lines go (default: nowhere).

    Each trial starts from the same initial weights; trials differ in their seeds (shuffling,
    dropout, probe set).
    """
    cfg = copy.deepcopy(config) if config is not None else with_recipe(RunConfig())
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

    def on_device(source: Optional[DataSource]) -> Optional[DataSource]:
        return tuple(t.to(device) for t in source) if source is not None and is_tensor_pair(source) else source

    train, val, test = on_device(train), on_device(val), on_device(test)

    def inputs(trial: int, seed: int) -> TrialInputs:
        trial_probe = probe if probe is not None else probe_from_source(
            train, cfg.prune.flow_probe_size, seed)
        return TrialInputs(copy.deepcopy(model), train, val, test, trial_probe)

    experiment = observed(cfg, run_path(cfg) if output_dir is not None else None,
                          progress=progress, echo=echo or (lambda s: None), inputs=inputs,
                          name=api_name)
    results = experiment.run()
    if results:
        final_model, final_masks = results[-1].model, results[-1].masks
    else:  # the run in output_dir was already finished: read its result back
        final_model, final_masks = _saved_result(model, experiment)
    return PruneResult(final_model, final_masks, experiment.rounds, experiment.epochs,
                       experiment.run_dir.path if experiment.run_dir else None,
                       experiment.records.tickets, results[-1].ticket if results else None)


def _saved_result(model: nn.Module, experiment: IMPExperiment) -> Tuple[nn.Module, Masks]:
    last = experiment.rounds[-1]
    path = experiment.run_dir.path
    saved = copy.deepcopy(model)
    saved.load_state_dict(model_state(path, last["trial"], last["round"]))
    masks = Masks.from_state_dict(round_masks(path, last["trial"], last["round"]))
    return saved.to(experiment.device), masks.bind(saved)


def ablate(run_dir: Union[str, Path], random_prune: bool = True, random_reinit: bool = True,
           trials: int = 1, trial: Optional[int] = None, progress: Optional[bool] = False,
           echo: Callable[[str], None] = print) -> List[Dict[str, Any]]:
    """The lottery-ticket ablations of a finished run made with ``ticket_epochs`` (as
    ``incop ablate``): ``trials`` retrainings of a random mask with the ticket's per-layer counts
    and of the ticket's mask from a fresh initialisation, each with the ticket's budget. Rows
    go to the run's ablations.json/.csv; all of the run's rows are returned (those already
    there are not computed again)."""
    from .launch.ablate import ablate_run

    kinds = [k for k, on in (("random_prune", random_prune), ("random_reinit", random_reinit))
             if on]
    if not kinds:
        raise UsageError("ablate: ask for random_prune, random_reinit or both")
    return ablate_run(Path(run_dir), kinds, trials, trial, echo, progress)
