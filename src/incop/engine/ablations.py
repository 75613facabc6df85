"""The lottery-ticket ablations (Frankle and Carbin 2019; OpenLTH's randomly_prune and
randomly_reinitialize branches): the found mask's success must come from the mask and the
rewind point together. ``random_prune`` retrains, from the ticket's rewind point, a random mask
with the ticket's per-layer counts; ``random_reinit`` retrains the ticket's own mask from a
fresh initialisation. Both with the ticket's budget, schedule and data order, so only the mask
or the weights differ. A ticket that does not beat both is not a ticket."""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

import torch

from ..pruning.masks import Masks
from ..stopping.criteria import FixedEpochs
from .events import Observer
from .learned import LabelBaseline, untrained_reason
from .precision import Compute
from .runtime import TICKET_ROUND, seed_everything
from .trial_inputs import TrialInputsFactory
from .training import evaluate, planned_iterations, train_run

ABLATIONS = ("random_prune", "random_reinit")


def random_masks(masks: Masks, generator: torch.Generator) -> Masks:
    """Each layer's count of survivors at uniformly random positions of that layer."""
    out = {}
    for name in masks.names():
        m = masks[name]
        flat = torch.zeros(m.numel(), dtype=m.dtype)
        flat[torch.randperm(m.numel(), generator=generator)[:int(m.count_nonzero())]] = 1
        out[name] = flat.view_as(m)
    return Masks(out)


def ablation_seed(seed: int, kind: str, index: int) -> int:
    """Ablation ``index`` of ``kind`` for the search trial of ``seed``: its own seed, apart from
    the search's (round seeds are ``seed * 100_003 + small``)."""
    return seed * 1_000_003 + 500_000 + 1_000 * ABLATIONS.index(kind) + index


class Ablations:
    """Trains the ablations of a finished search's tickets. ``inputs(trial, seed)`` gives the
    trial's data split and its model; ``fresh`` (default ``inputs``) the same with a model
    initialised anew under the current random state (no pretrained weights)."""

    def __init__(self, cfg, inputs: TrialInputsFactory, device: torch.device,
                 events: Observer, fresh: Optional[TrialInputsFactory] = None) -> None:
        self.cfg, self.inputs, self.device, self.events = cfg, inputs, device, events
        self.fresh = fresh or inputs

    def run(self, trial: int, seed: int, kind: str, index: int,
            rewind: Dict[str, torch.Tensor], ticket_masks: Masks) -> Dict[str, Any]:
        """One ablation's row: what was retrained, its accuracies and cost."""
        a_seed = ablation_seed(seed, kind, index)
        seed_everything(a_seed)  # a random re-initialisation draws its weights here
        if kind == "random_prune":
            masks = random_masks(ticket_masks, torch.Generator().manual_seed(a_seed))
            row = self.retrain(trial, seed, masks, rewind, f"{kind} {index}")
        else:
            row = self.retrain(trial, seed, ticket_masks.clone(), None, f"{kind} {index}")
        return {"trial": trial, "seed": seed, "ablation": kind, "index": index,
                "ablation_seed": a_seed, **row}

    def retrain(self, trial: int, seed: int, masks: Masks,
                start: Optional[Dict[str, torch.Tensor]], label: str) -> Dict[str, Any]:
        """``masks`` trained from ``start`` (None: a fresh initialisation drawn from the current
        random state) as the ticket is: its budget, schedule and seed. Its row: remaining
        weights, epochs, accuracies, time."""
        data = (self.inputs if start is not None else self.fresh)(trial, seed)
        model = data.model.to(self.device)
        compute = Compute.for_model(self.device, self.cfg.train.precision,
                                    self.cfg.train.channels_last, model)
        compute.prepare_model(model)
        if start is not None:
            model.load_state_dict(start)
        masks.bind(model).apply()
        epochs = self.cfg.train.ticket_epochs
        self.events.training_started(f"trial {trial} {label}",
                                     planned_iterations(data.train, self.cfg, epochs))
        t0 = time.perf_counter()
        try:  # the ticket's seed: its data order, shuffles and augmentation
            outcome = train_run(self.cfg, model, masks, data.train, data.val, seed, TICKET_ROUND,
                                epochs, [FixedEpochs()],
                                lambda rec: self.events.checked(trial, TICKET_ROUND, rec),
                                compute, check_every=None)
        finally:
            self.events.training_ended()
        test = evaluate(model, data.test, compute)[0] if data.test is not None else None
        final = outcome.final
        untrained = untrained_reason(LabelBaseline.of(data.val), final.val_acc, final.val_loss,
                                     final.train_loss)  # a gap to it says little of the mask
        return {"remaining": masks.remaining(), "remaining_pct": 100.0 * masks.remaining_fraction(),
                "epochs": outcome.epochs, "train_loss": final.train_loss,
                "val_acc": final.val_acc, "test_acc": test,
                "diverged": outcome.stop_reason == "diverged", "untrained": untrained,
                "time_train": time.perf_counter() - t0}
