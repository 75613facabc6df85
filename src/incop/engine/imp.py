"""The IMP loop of docs/methods.md, "The loop": warm-up, rewind point, reference flows, then per round prune,
rewind, train with checks, record; repeated over trials. The loop computes and tells its
observers (:mod:`incop.engine.events`) what happened; records, files, trackers, progress bars and
figures are theirs, so nothing here writes a file."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..base.version import __version__
from ..base.errors import UsageError
from ..base.text import count, duration
from ..config.identity import identity_key
from ..config.methods import resolve
from ..config.recipes import DEFAULT_RECIPE, data_of, describe, find, steps_of
from ..config.schema import RunConfig, flag_name, ticket_rewind, warmup_identity
from ..data.batches import source_size, train_batches
from ..data.datasets import RawDataset, load_raw
from ..pruning.masks import Masks, skipped_rows
from ..base.timepoints import parse_point
from ..pruning.gradual import GradualSchedule
from ..pruning.rules import RULES
from ..pruning.sparsity_schedules import (RuleRounds, ScheduleInputs, SparsitySchedule,
                                          build_schedule)
from ..stopping.criteria import FixedEpochs, flow_monitor, round_criteria
from ..stopping.flows import activation_similarity, layer_activations, monitored_layers
from .estimate import (MOST_ROUNDS, STALL_ROUNDS, first_epoch_line, landings_text, more_rounds,
                       planned_rounds, target_report)
from .events import Console, Observer, Observers
from .failures import Diverged, Untrained, diverged_error, diverged_event
from .learned import advice, dense_verdict
from .precision import Compute, precision_warning
from .progress import ProgressBars
from .records import RunRecords, criterion_report, round_rows, ticket_row
from .round_data import RoundData
from .schedules import allr_factor, pruning_step_sizes
from .runtime import TICKET_ROUND, WARMUP_ROUND, resolve_device, seed_everything, versions
from .tables import end_of_run_text, run_notes
from .trial_inputs import TrialInputs, TrialInputsFactory, registry_inputs
from .training import (Segment, epochs_to_iterations, evaluate, iterations_per_epoch,
                       make_optimizer, planned_iterations, rewind_iteration, train_run)


@dataclass
class TrialResult:
    seed: int
    warmup: Dict[str, Any]
    rounds: List[Dict[str, Any]] = field(default_factory=list)
    model: Optional[nn.Module] = None
    masks: Optional[Masks] = None
    ticket: Optional[nn.Module] = None  # the final mask retrained from --ticket_rewind's point
    ticket_start: Optional[Dict[str, Any]] = None  # the weights the ticket (and ablations) start from


@dataclass
class _TrialRun:
    """What one trial's rounds share: its inputs, model, masks and schedule, the dense
    network's references, and what a resume needs (``saved``)."""

    trial: int
    seed: int
    data: TrialInputs
    model: nn.Module
    masks: Masks
    schedule: SparsitySchedule
    layers: List[str]
    skipped: Any
    probe_x: torch.Tensor
    criteria: Any
    reference_acts: Any
    rewind_state: Dict[str, Any]
    ticket_state: Dict[str, Any]
    saved: Dict[str, Any]
    first_round: int
    search_over: bool  # resumed after its last round, with the ticket still to train
    optimizer: Any  # the one optimizer of a schedule that is one training run, else None


class IMPExperiment:
    """Runs ``cfg.experiment.num_trial`` trials of the IMP search (docs/methods.md, "The
    loop"). What is measured goes to ``self.records``; ``observers`` follow the run (a run directory, trackers,
    figures: see :func:`incop.launch.session.experiment`, which adds them for a run directory)."""

    def __init__(self, cfg: RunConfig, raw: Optional[RawDataset] = None,
                 progress: Optional[bool] = None, echo: Callable[[str], None] = print,
                 inputs: Optional[TrialInputsFactory] = None,
                 name: Callable[[str], str] = flag_name,
                 observers: Sequence[Observer] = ()) -> None:
        """``inputs(trial, seed)`` supplies each trial's model and data; by default they come
        from the model and dataset registries named in ``cfg``. ``name`` is how advice names
        a setting (a flag, or a config field for API users). ``echo`` receives the lines a run
        prints; ``progress`` None shows bars on a terminal only."""
        self.cfg = cfg
        self.raw = raw
        self.inputs = inputs or self._registry_inputs
        self.name = name
        self.device = resolve_device(cfg.experiment.device, cfg.experiment.gpu_id)
        self.compute = Compute(self.device, cfg.train.precision)  # checked before any work
        self.rule_name, self.criterion_name, self.epsilon = resolve(cfg.prune)
        self.rule = RULES.get(self.rule_name)(cfg.prune)
        self.run_dir = None  # set by whoever adds a run directory's observers
        self.records = RunRecords()  # first, so the others see a round's rows once it ended
        self.notes: List[str] = []  # what a reader must know of the finished run (its summary)
        self._first_epoch_said = False
        self._epoch_seconds: Optional[float] = None  # the first epoch's, for the estimates
        self._target_keep: Optional[int] = None  # gmp's count at its end, when not the network's
        self.stalls: Dict[int, int] = {}  # trial -> the round its pruning stalled at
        self.round_data = RoundData(cfg.train.round_data_fraction, cfg.train.round_data_choice)
        self.events = Observers([self.records, Console(echo),
                                 ProgressBars(None if progress is None else not progress),
                                 *observers])
        self._trial = 0

    # the records, by their view names
    rounds = property(lambda self: self.records.rounds)
    epochs = property(lambda self: self.records.epochs)
    layers = property(lambda self: self.records.layers)
    similarity = property(lambda self: self.records.similarity)
    trials = property(lambda self: self.records.trials)

    def observe(self, *observers: Observer) -> "IMPExperiment":
        """Add observers of the run's events, after those already there."""
        self.events.observers.extend(observers)
        return self

    # ------------------------------------------------------------------ whole experiment
    def run(self) -> List[TrialResult]:
        """Run every trial not finished yet; an observer holding saved progress (a run
        directory) resumes it. Bad input found before any training is ``refused``, so nothing
        is left behind; whatever happens, observers are ``closed``."""
        try:
            self.events.started()
            return self._run()
        except UsageError as e:
            if not isinstance(e, (Diverged, Untrained)):
                self.events.refused()
            raise
        finally:
            self.events.closed()

    def _run(self) -> List[TrialResult]:
        cfg = self.cfg
        progress = self.events.resume()
        if progress:
            self.records.restore(progress["records"], progress["finished"])
        self._first_epoch_said = bool(self.records.rounds or self.records.trials)  # resumed
        if self.raw is None and self.inputs == self._registry_inputs:
            self.raw = load_raw(cfg.data.dataset, cfg.data.data_dir, cfg.data.image_size)
        source = f" [{self.raw.source}]" if self.raw is not None else ""
        warning = precision_warning(self.device, cfg.train.precision)
        if warning:
            self._say(warning)
        method = (f"{cfg.prune.method} (rule {self.rule_name}, stop {self.criterion_name}"
                  + (f", epsilon {self.epsilon:g}" if self.criterion_name != "fixed" else "")
                  + (", the rate restarted at every step (GMP*)"
                     if cfg.prune.method == "gmp" and cfg.prune.gmp_lr == "restart" else "") + ")")
        self._say(f"incop {__version__}: {_recipe_words(cfg.prune.recipe, method)} on "
                  f"{cfg.model.arch}/{cfg.data.dataset}{source}, device {self.device}")
        if cfg.train.round_data_fraction is not None:
            chosen = ("the prune-aware critical set of the round before (round 0 at random)"
                      if cfg.train.round_data_choice == "prac" else "drawn at random each round")
            self._say(f"each round trains on {100 * cfg.train.round_data_fraction:g}% of the "
                      f"training split, {chosen}; epochs are counted in full-data epochs")
        if cfg.experiment.imp_total_iter == 1:
            self._say("NOTE: --exper_imp_total_iter 1 runs round 0 only (the dense network "
                      "trained from the rewind point) and prunes nothing; use 2 or more rounds "
                      "to prune")
        state = progress["trial"] if progress else None
        if state:
            after = "its warm-up" if state["round"] == WARMUP_ROUND else f"round {state['round']}"
            self._say(f"resuming trial {state['index']} after {after} "
                      f"({len(self.records.finished)} trial(s) already finished)")
        results = []
        for t in range(cfg.experiment.num_trial):
            if t in self.records.finished:
                continue
            resume = state if state and state["index"] == t else self.events.continue_trial(t)
            results.append(self.run_trial(t, cfg.experiment.seed + t, resume))
        self._summarise()
        return results

    def _summarise(self) -> None:
        """The end-of-run tables, then ``completed`` (the summary, the files), then the notes a
        reader must not miss, last: a criterion that measured nothing, a target not reached,
        an untrained network."""
        cfg = self.cfg
        criterion = criterion_report(self.rounds, self.criterion_name, self.epsilon, self.name)
        target = target_report(self.rounds, cfg.prune.target_remaining,
                               cfg.experiment.imp_total_iter, self.name, cfg.experiment.run_name,
                               self._target_keep, self.stalls, cfg.prune.keep_at or ())
        self.notes = run_notes(criterion, target, self.records.trials, self.name,
                               self.records.final_layer_rows())
        for text in end_of_run_text(self.records) + landings_text(
                target, self.run_dir is not None):
            self._say(text)
        self.events.completed(self.records, {"criterion": criterion, "target": target,
                                             "notes": self.notes})
        for note in self.notes:
            self._say(f"NOTE: {note}")

    def _say(self, msg: str) -> None:
        self.events.line(msg)

    # ------------------------------------------------------------------ one trial
    def run_trial(self, trial: int, seed: int, resume: Optional[Dict[str, Any]] = None) -> TrialResult:
        """One IMP search with one seed: set up (or restore ``resume``, a saved trial state),
        then round after round prune, rewind, train and record, until the schedule's last
        round; then the ticket."""
        run = self._set_up_trial(trial, seed, resume)
        result = TrialResult(seed, run.saved["warmup"])
        rounds = range(run.first_round, 0 if run.search_over else run.schedule.rounds)
        self.events.trial_started(trial, rounds)
        self._announce_rounds(trial, run.schedule, run.first_round)
        for k in rounds:
            if self._round(run, k):
                break
        result.rounds = self.records.trial_rounds(trial)
        result.model, result.masks, result.ticket_start = run.model, run.masks, run.ticket_state
        if self.cfg.train.ticket_epochs > 0:
            result.ticket = self._ticket(trial, seed, run.masks, run.ticket_state, run.data)
        return result

    def _round(self, run: "_TrialRun", k: int) -> bool:
        """Round ``k``: prune the trained survivors (not in round 0), rewind where the
        schedule does, train at the round's rate, evaluate and record. True if it was the
        last."""
        t0 = time.perf_counter()
        info, lr = self._prune(run, k)
        if k == 0 or (self.cfg.train.rewind_to != "none" and run.schedule.rewinds):
            run.model.load_state_dict(run.rewind_state)  # rewind (round 0 too), then mask
        run.masks.bind(run.model).apply()
        times = {"prune": time.perf_counter() - t0}
        segment = self._segment(run.schedule, k, run.optimizer, lr)
        outcome = self._train(run.model, run.masks, run.data, run.seed, k, self.cfg.train.epochs,
                              run.criteria, f"round {k}", lr=lr, segment=segment)
        if segment is not None:
            run.saved["optimizer"] = run.optimizer.state_dict()
        if outcome.stop_reason == "diverged":
            self._diverged(run.trial, k, outcome.epochs, run.data, lr)
        rows = self._measure(run, k, outcome, info, times)
        last = run.schedule.last(k, run.masks) or self._stalled(run.trial, k, run.schedule,
                                                                run.masks.remaining())
        self._round_done(run.trial, run.seed, k, rows, run.model, run.masks, run.saved, last)
        self._say(self._round_line(run.trial, k, rows["round"], outcome, lr))
        if k == 0 and self.cfg.train.warmup == 0:
            self._check_learned(run.trial, run.data, None)
        if k >= 1 and not last and run.schedule.to_target:
            self._estimate_rounds(run.trial, k, run.schedule.rounds)
        return last

    def _prune(self, run: "_TrialRun", k: int) -> Tuple[Dict[str, Any], float]:
        """The schedule's pruning step of round ``k`` (none in round 0), which replaces the
        trial's masks, and the learning rate the round trains at (its one source)."""
        if k == 0:
            return {"lr": self.cfg.train.lr}, self.cfg.train.lr
        trained = {n: p.detach().clone() for n, p in run.masks.parameters(run.model).items()}
        new, info = run.schedule.prune(k, trained, run.masks)  # never below the target
        lr = self._round_rate(run.model, run.masks, new)
        run.masks = new
        return {**info, "lr": lr}, lr

    def _round_rate(self, model, old: Masks, new: Masks) -> float:
        """--net_lr, or with --net_lr_allr ALLR's rate for the round after this pruning step
        (the dense network trained for the warm-up and round 0; a round's budget is
        --net_train_epochs)."""
        t = self.cfg.train
        if not t.lr_allr:
            return t.lr
        sizes = pruning_step_sizes(dict(model.named_parameters()), old, new)
        cost = self._round_cost()
        return t.lr * allr_factor(*sizes, cost / (t.warmup + cost))

    def _measure(self, run: "_TrialRun", k: int, outcome, info, times) -> Dict[str, Any]:
        """The round's rows: test accuracy, the critical set's pass, the activations' similarity
        to the dense network's, and what the training and pruning recorded."""
        t0 = time.perf_counter()
        test = evaluate(run.model, run.data.test, self.compute)[0] \
            if run.data.test is not None else None
        run.saved.update(self.round_data.round_ended(run.model, run.data.train, k, self.compute))
        times["eval"] = time.perf_counter() - t0  # the critical set's pass included
        t0 = time.perf_counter()
        sims = activation_similarity(run.reference_acts,
                                     layer_activations(run.model, run.layers, run.probe_x))
        times["similarity"] = time.perf_counter() - t0
        return round_rows(run.trial, run.seed, k, run.masks, outcome, test, info, times,
                          run.layers, sims, run.skipped)

    def _round_line(self, trial: int, k: int, record: Dict[str, Any], outcome, lr: float) -> str:
        return (f"trial {trial} round {k}: {record['remaining_pct']:.2f}% remaining, "
                f"{count(outcome.epochs, 'epoch')}, {count(outcome.checks, 'check')} "
                f"({outcome.stop_reason}), val {record['val_acc']:.2f}%, test "
                f"{_pct(record.get('test_acc'))}"
                + (f", ALLR rate {lr:.4g}" if self.cfg.train.lr_allr and k > 0 else ""))

    def _announce_rounds(self, trial: int, schedule: SparsitySchedule, first_round: int) -> None:
        """How many rounds a rule that removes a fixed fraction needs to its target, when
        fewer than the cap (SAP's depend on the weights)."""
        p = self.cfg.prune
        if isinstance(schedule, RuleRounds) and first_round == 0:
            expected = planned_rounds(self.rule_name, p.ratio, p.target_remaining,
                                      schedule.rounds)
            if expected is not None and expected < schedule.rounds:
                self.events.rounds_estimated(trial, expected)

    def _set_up_trial(self, trial: int, seed: int, resume: Optional[Dict[str, Any]]) -> "_TrialRun":
        """The trial's inputs, model, masks, schedule and stopping criteria, every setting
        checked before any training; its starting point (warm-up, or the saved state of a
        resumed trial) and the dense network's references."""
        cfg, dev = self.cfg, self.device
        self._trial = trial
        seed_everything(seed)
        data = self.inputs(trial, seed)
        model = data.model.to(dev)
        self.compute = Compute.for_model(dev, cfg.train.precision, cfg.train.channels_last, model)
        self.compute.prepare_model(model)
        probe_x, probe_y = (t.to(dev) for t in data.probe)
        layers = [name for name, _ in monitored_layers(model, probe_x[:1])]
        skipped = skipped_rows(model, cfg.prune.include or (), cfg.prune.exclude or ())
        masks = self._initial_masks(model, resume)
        monitor = flow_monitor(self.criterion_name, model, masks, probe_x, probe_y,
                               cfg.prune.flow_stat)  # checked before any training
        schedule = self._schedule(data)  # checked before any training
        self._target_keep = schedule.final_keep(masks)
        self._check_lengths(data)
        self.round_data.start_trial(data.train, seed, resume)  # a loader is refused here
        warmup, rewind, dense, ticket, first_round = self._starting_point(
            model, masks, data, trial, seed, len(probe_y), resume)
        t0 = time.perf_counter()  # references: the trained dense network, whatever the rewind
        reference_acts = layer_activations(model, layers, probe_x)
        criteria = round_criteria(self.criterion_name, monitor, model, self.rule, self.epsilon,
                                  warmup, cfg.prune.stop_on_recovery)
        warmup["reference_time"] = time.perf_counter() - t0
        if resume is not None:
            model.load_state_dict(resume["model"])
            masks.bind(model)
        saved = self._rewind_points(trial, seed, data, masks, warmup, rewind, dense, ticket,
                                    first_round)
        return _TrialRun(trial, seed, data, model, masks, schedule, layers, skipped, probe_x,
                         criteria, reference_acts, rewind, ticket, saved, first_round,
                         resume is not None and resume.get("ticket_pending", False),
                         self._run_optimizer(model, schedule, resume))

    def _starting_point(self, model, masks, data: TrialInputs, trial: int, seed: int,
                        probe_size: int, resume: Optional[Dict[str, Any]]):
        """(warm-up record, rewind point, trained dense network, the ticket's start, first
        round): a new trial's warm-up (or one shared with another run), or a resumed trial's
        saved ones, the model left as the trained dense network."""
        if resume is None:
            return (*self._warm_up_or_reuse(model, masks, data, trial, seed, probe_size), 0)
        rewind = resume["rewind"]
        dense = resume.get("dense", rewind)
        model.load_state_dict(dense)
        return resume["warmup"], rewind, dense, resume.get("ticket", rewind), resume["round"] + 1

    def _rewind_points(self, trial: int, seed: int, data: TrialInputs, masks: Masks, warmup,
                       rewind, dense, ticket, first_round: int) -> Dict[str, Any]:
        """Tell the observers the trial's rewind points; what a resume needs of them (saved
        with every round); and, for a new trial, check the warm-up learned."""
        saved = {"rewind": rewind, "warmup": warmup}
        self.events.rewind_point(trial, rewind, None if dense is rewind else dense,
                                 None if ticket is rewind else ticket)
        if dense is not rewind:
            saved["dense"] = dense
        if ticket is not rewind:
            saved["ticket"] = ticket
        if self.cfg.train.warmup > 0 and first_round == 0:
            self._check_learned(trial, data, {"index": trial, "seed": seed, "round": WARMUP_ROUND,
                                              "model": dense, "masks": masks.state_dict(),
                                              "ticket_pending": False, **saved})
        elif self.cfg.train.warmup == 0 and first_round > 0:
            self._check_learned(trial, data, None)
        return saved

    def _stalled(self, trial: int, k: int, schedule: SparsitySchedule, remaining: int) -> bool:
        """A search to a target whose last STALL_ROUNDS pruning steps removed nothing stops
        there (its rounds would only retrain the same mask up to the cap): said in its notes.
        Rounds before this one are in the records already; this one's count is ``remaining``."""
        if not schedule.to_target or k < STALL_ROUNDS:
            return False
        before = [r["remaining"] for r in self.records.trial_rounds(trial)][-STALL_ROUNDS:]
        counts = before + [remaining]
        if len(counts) <= STALL_ROUNDS or len(set(counts)) > 1:
            return False
        self.stalls[trial] = k
        return True

    def _estimate_rounds(self, trial: int, k: int, cap: int) -> None:
        """After each pruning step of a search to a target: how many rounds it will take at
        the pace of the steps so far, told to the progress bars; said after the first step,
        and for SAP (whose steps shrink, so one step says too little) after the third."""
        rounds = self.records.trial_rounds(trial)
        more = more_rounds([r["remaining"] for r in rounds], rounds[-1]["total"],
                           self.cfg.prune.target_remaining)
        if more is None:
            return
        self.events.rounds_estimated(trial, min(cap, k + 1 + more))
        sap = self.rule_name == "sap"
        if k in ((1, 3) if sap else (1,)) and trial == self.records.trials[0]["trial"]:
            self._say(self._rounds_line(k, rounds[-1]["remaining_pct"], k + 1 + more, cap,
                                        sap and k == 1))

    def _rounds_line(self, k: int, remaining_pct: float, rounds: int, cap: int,
                     one_sap_step: bool) -> str:
        target, epochs = self.cfg.prune.target_remaining, rounds * self._round_cost()
        many = f"more than {MOST_ROUNDS}" if rounds > MOST_ROUNDS else f"about {rounds}"
        took = (f", {duration(epochs * self._epoch_seconds)}"
                if self._epoch_seconds is not None and rounds <= MOST_ROUNDS else "")
        line = (f"estimate: round {k} kept {remaining_pct:.2f}% of the weights; "
                f"{'at that rate ' if one_sap_step else 'at this pace '}{many} rounds reach "
                f"{target:g}% ({count(epochs, 'epoch')} of training{took})")
        if one_sap_step:
            line += "; SAP's steps shrink as the weights concentrate: expect more (estimated " \
                    "again after round 3)"
        if rounds > cap:
            line += (f"; the cap, {self.name('experiment.imp_total_iter')} {cap}, ends the "
                     f"search first")
        return line

    def _first_epoch_estimate(self, seconds: float) -> str:
        """The run's length in epochs and time, said once its first epoch is timed (one trial;
        the trials are alike)."""
        cfg = self.cfg
        gradual = cfg.prune.method == "gmp"
        on_the_way = len(cfg.prune.keep_at or ())  # each may add a round to N equal steps
        rounds = 1 if gradual else cfg.prune.steps + 1 + on_the_way if cfg.prune.steps else planned_rounds(
            self.rule_name, cfg.prune.ratio, cfg.prune.target_remaining,
            cfg.experiment.imp_total_iter)
        line = first_epoch_line(seconds, cfg.train.warmup, self._round_cost(), rounds,
                                cfg.train.ticket_epochs, cfg.prune.target_remaining,
                                cfg.experiment.imp_total_iter, self.criterion_name != "fixed")
        trials = cfg.experiment.num_trial
        return line + (f"; each of the {trials} trials takes as long" if trials > 1 else "")

    def _ticket(self, trial: int, seed: int, masks: Masks, start, data: TrialInputs):
        """docs/methods.md, "The final ticket": the final mask, retrained from --ticket_rewind's point for
        --ticket_epochs with no early stop, on a copy (the search's final model stays the
        result's model). Its accuracy is the ticket's; its cost is kept apart from the
        search's."""
        model = self.compute.prepare_model(copy.deepcopy(data.model).to(self.device))
        model.load_state_dict(start)
        ticket_masks = masks.clone().bind(model)
        ticket_masks.apply()
        outcome = self._train(model, ticket_masks, data, seed, TICKET_ROUND,
                              self.cfg.train.ticket_epochs, [FixedEpochs()],
                              f"trial {trial} ticket", check_every=None)
        if outcome.stop_reason == "diverged":
            self._diverged(trial, "ticket", outcome.epochs, data)
        test_acc = evaluate(model, data.test, self.compute)[0] if data.test is not None else None
        row = ticket_row(trial, seed, ticket_masks, outcome, test_acc)
        self.events.ticket_ended(trial, row, model, ticket_masks)
        self._say(f"trial {trial} ticket: {row['remaining_pct']:.2f}% remaining, retrained "
                  f"{count(outcome.epochs, 'epoch')} from {_point_words(ticket_rewind(self.cfg))}, val "
                  f"{row['val_acc']:.2f}%, test {_pct(test_acc)}")
        return model

    def _schedule(self, data: TrialInputs) -> SparsitySchedule:
        """What prunes when (``incop.pruning.sparsity_schedules``): --prune_schedule, else
        gradual magnitude pruning's cubic steps for --prune_method gmp, --prune_steps' equal
        steps, else rounds sized by the rule up to the target or --exper_imp_total_iter;
        through --prune_keep_at's targets exactly on the way."""
        return build_schedule(ScheduleInputs(self.cfg.prune, self.rule, self.rule_name,
                                             self.cfg.experiment.imp_total_iter,
                                             lambda: self._gradual(data)))

    def _gradual(self, data: TrialInputs) -> GradualSchedule:
        """The cubic schedule of --prune_method gmp in iterations of the run after the warm-up
        (whose length is --net_train_epochs)."""
        p = self.cfg.prune
        per_epoch = self._per_epoch(data)

        def at(text: str, flag: str, words=()) -> int:
            point = parse_point(text, flag, words)
            if point == "start":
                return 0
            return int(point[0]) if point[1] == "it" else epochs_to_iterations(point[0], per_epoch)

        return GradualSchedule(at(p.gmp_start, "--gmp_start", ("start",)),
                               at(p.gmp_end, "--gmp_end"), at(p.gmp_every, "--gmp_every"),
                               epochs_to_iterations(self.cfg.train.epochs, per_epoch),
                               p.target_remaining)

    def _check_lengths(self, data: TrialInputs) -> None:
        """A round or a ticket shorter than half an iteration would train once anyway (one
        iteration is the least a round trains): refused, so a budget means what it says."""
        per_epoch, t = self._per_epoch(data), self.cfg.train
        for flag, epochs in (("--net_train_epochs", t.epochs), ("--ticket_epochs", t.ticket_epochs)):
            if epochs and epochs_to_iterations(epochs, per_epoch) < 1:
                source = (f" (recipe {self.cfg.prune.recipe}'s rounds)"
                          if self.cfg.prune.recipe and flag == "--net_train_epochs" else "")
                raise UsageError(f"{flag} {epochs:g}{source} is less than one iteration (an epoch "
                                 f"here is {per_epoch} iterations): give at least "
                                 f"{1 / per_epoch:.3g} epochs")

    def _per_epoch(self, data: TrialInputs) -> int:
        return iterations_per_epoch(train_batches(data.train, self.cfg.data.batch_size,
                                                  torch.Generator()))

    def _run_optimizer(self, model, schedule: SparsitySchedule, resume):
        """The one optimizer of a schedule whose rounds are segments of one training run
        (gradual pruning), carried from round to round (and across a resume); None for IMP,
        whose every round starts a fresh one."""
        if schedule.bounds() is None:
            return None
        t = self.cfg.train
        optimizer = make_optimizer(model, t.lr, t.momentum, t.weight_decay, t.optimizer)
        if resume is not None and "optimizer" in resume:
            optimizer.load_state_dict(resume["optimizer"])
        return optimizer

    def _segment(self, schedule: SparsitySchedule, k: int, optimizer,
                 lr: float) -> Optional[Segment]:
        """Round ``k``'s part of a schedule that is one training run (gradual pruning), or None
        (IMP: every round a training run of its own)."""
        bounds = schedule.bounds()
        if bounds is None:
            return None
        return Segment(bounds[k], bounds[k + 1] - bounds[k], bounds[-1], optimizer, lr,
                       restart=self.cfg.prune.gmp_lr == "restart")

    def _round_cost(self) -> float:
        """A round's budget in full-data epochs: --net_train_epochs passes over the round's
        part of the split (--round_data_fraction), about that fraction of them."""
        t = self.cfg.train
        return t.epochs * (t.round_data_fraction or 1.0)

    def _initial_masks(self, model, resume: Optional[Dict[str, Any]]) -> Masks:
        """All ones over the weights to prune, or the saved masks of a resumed trial."""
        if resume is not None:
            _check_fits(model, resume, self.events.kept_in())
            return Masks.from_state_dict(resume["masks"])
        p = self.cfg.prune
        masks = Masks.ones_like(model, p.include or (), p.exclude or ()).bind(model)
        if masks.total() == 0:
            raise UsageError("the model has no weights to prune (no Conv/Linear/attention "
                             "weight, or all excluded); name some with --prune_include")
        return masks

    def _round_done(self, trial, seed, k, rows, model, masks, saved: Dict[str, Any],
                    last: bool) -> None:
        """Tell the observers, with what a resume needs unless the trial is over (its last
        round, and no ticket to train)."""
        ticket_pending = last and self.cfg.train.ticket_epochs > 0
        state = None
        if not last or ticket_pending:
            state = {"index": trial, "seed": seed, "round": k, "model": model.state_dict(),
                     "masks": masks.state_dict(), "ticket_pending": ticket_pending, **saved}
        self.events.round_ended(trial, k, rows, model, masks, state)

    def _diverged(self, trial: int, k, epoch: float, data: TrialInputs,
                  lr: Optional[float] = None) -> None:
        """A non-finite loss at rate ``lr`` (None: --net_lr): tell the observers what happened
        (beside, never as, the completed rounds), and stop the run."""
        lr, done = self.cfg.train.lr if lr is None else lr, len(self.rounds)
        self.events.diverged(diverged_event(trial, k, epoch, lr, done))
        raise diverged_error(trial, k, epoch, lr, self.name("train.lr"), done,
                             self.events.kept_in(), data.train)

    def _check_learned(self, trial: int, data: TrialInputs, state: Optional[Dict[str, Any]]) -> None:
        """Stop with one line when the trained dense network is still at chance: after the
        warm-up, or after round 0 when there is none. ``state`` (what a resume needs) is saved
        first, so --allow_untrained continues from there."""
        cfg = self.cfg
        warm = next(w for w in self.records.trials if w["trial"] == trial)
        round0 = next((r for r in self.rounds if r["trial"] == trial and r["round"] == 0), None)
        note = dense_verdict(warm, round0, cfg.train.warmup, data.val)
        if note is None:
            return
        warm["untrained"] = note
        if cfg.experiment.allow_untrained:
            self._say(f"WARNING: trial {trial}: {note}; continuing (--allow_untrained)")
            return
        self.events.untrained(trial, note, state)  # persistence keeps the warm-up
        kept = self.events.kept_in() is not None
        raise Untrained(f"trial {trial}: {note}; the search would prune noise. "
                        + advice(cfg.model.arch, cfg.train.lr, cfg.train.momentum, cfg.train.warmup,
                                 self.name)
                        + (f"; its training is saved, so adding "
                           f"{self.name('experiment.allow_untrained')} continues from there"
                           if kept else ""))

    def _registry_inputs(self, trial: int, seed: int) -> TrialInputs:
        """The model and dataset named in the config, split by the trial's seed."""
        return registry_inputs(self.cfg, self.raw, self.device, seed)

    def _warm_up_or_reuse(self, model, masks, data: TrialInputs, trial: int, seed: int,
                          probe_size: int):
        """The trial's warm-up: one trained before with the same identity (everything that
        determines it: model, data, seed, warm-up settings, rewind point, versions, device,
        threads), when an observer shares them and it checks out; else trained now and offered
        for sharing. Registry models and data only: a user's own inputs may differ unseen."""
        cfg = self.cfg
        if cfg.train.warmup <= 0 or self.inputs != self._registry_inputs:
            return self._warm_up(model, masks, data, trial, seed, probe_size)
        identity = warmup_identity(cfg.to_dict(), seed, versions(), self.device.type,
                                   torch.get_num_threads())
        key = identity_key(identity)
        cached = self.events.shared_warmup(key, identity)
        if cached is not None:
            try:
                return self._reuse_warm_up(model, cached, trial, seed)
            except (RuntimeError, KeyError, TypeError, ValueError) as e:
                self._say(f"WARNING: the shared warm-up {key} does not fit this model "
                          f"({str(e).splitlines()[0][:120]}); training the warm-up again")
        warmup, rewind, dense, ticket = self._warm_up(model, masks, data, trial, seed, probe_size)
        self.events.warmup_trained(key, identity, {"warmup": warmup, "rewind": rewind,
                                                   "dense": None if dense is rewind else dense,
                                                   "ticket": None if ticket is rewind else ticket})
        return warmup, rewind, dense, ticket

    def _reuse_warm_up(self, model, cached: Dict[str, Any], trial: int, seed: int):
        """A shared warm-up's record and weights, as if trained here (the model holds the
        trained dense network after it, as after training)."""
        rewind = cached["rewind"]
        dense = rewind if cached.get("dense") is None else cached["dense"]
        ticket = rewind if cached.get("ticket") is None else cached["ticket"]
        # every state checked before any is loaded: a load that fails halfway would leave this
        # trial's fresh initialisation half overwritten for the warm-up trained instead
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        for state in (ticket, rewind, dense):
            if {k: tuple(v.shape) for k, v in state.items()} != shapes:
                raise ValueError("its weights are not of this model's names and shapes")
        for state in (ticket, rewind, dense):
            model.load_state_dict(state)
        warmup = {**cached["warmup"], "trial": trial, "warmup_reused": True}
        line = (f"trial {trial} (seed {seed}): dense warm-up "
                f"{count(self.cfg.train.warmup, 'epoch')} reused (trained before with the same "
                f"settings), val {warmup['warmup_val_acc']:.2f}%, test "
                f"{_pct(warmup['warmup_test_acc'])}; rewind point: iteration "
                f"{warmup['rewind_iteration']}")
        # only a record that passed every step here reaches the observers (trials.json): one
        # refused after it would stay beside the warm-up trained instead
        self.events.warmed_up(trial, warmup)
        self._say(line)
        return warmup, rewind, dense, ticket

    def _warm_up(self, model, masks, data: TrialInputs, trial: int, seed: int,
                 probe_size: int):
        """Train the dense network for --net_warmup epochs, saving the rewind point on the way
        (--rewind_to) and the ticket's (--ticket_rewind). Returns (the trial's warm-up record,
        rewind state, trained dense state, the ticket's start: the rewind state itself when it
        is the same point)."""
        cfg = self.cfg
        per_epoch = self._per_epoch(data)
        at, total = rewind_iteration(cfg.train.rewind_to, cfg.train.warmup, per_epoch)
        ticket_at = at if cfg.train.ticket_epochs <= 0 else rewind_iteration(
            ticket_rewind(cfg), cfg.train.warmup, per_epoch, "--ticket_rewind")[0]
        snapshot: Dict[str, Any] = {}

        def keep(iteration: int) -> None:
            for name, point in (("state", at), ("ticket", ticket_at)):
                if iteration == point and point != total:
                    snapshot[name] = copy.deepcopy(model.state_dict())

        keep(0)
        t0 = time.perf_counter()
        if cfg.train.warmup > 0:
            warm = self._train(model, masks, data, seed, WARMUP_ROUND, cfg.train.warmup, [],
                               f"trial {trial} warm-up", on_step=keep, check_every=None)
            if warm.stop_reason == "diverged":
                self._diverged(trial, None, warm.epochs, data)
            # its last check is the warm-up's end, where validation was just measured
            warm_loss, warm_val, warm_val_loss = (warm.final.train_loss, warm.final.val_acc,
                                                  warm.final.val_loss)
        else:
            warm_loss = None
            warm_val, warm_val_loss = evaluate(model, data.val, self.compute)
        warm_time = time.perf_counter() - t0
        warm_test = evaluate(model, data.test, self.compute)[0] if data.test is not None else None
        warmup = {"trial": trial, "seed": seed, "warmup_epochs": cfg.train.warmup,
                  "warmup_train_loss": warm_loss, "warmup_val_acc": warm_val,
                  "warmup_val_loss": warm_val_loss, "warmup_test_acc": warm_test,
                  "warmup_time": warm_time, "rewind_iteration": at,
                  "ticket_rewind_iteration": ticket_at, "warmup_iterations": total,
                  "train_size": source_size(data.train), "val_size": source_size(data.val),
                  "test_size": source_size(data.test) if data.test is not None else None,
                  "probe_size": probe_size, "warmup_reused": False}
        self.events.warmed_up(trial, warmup)
        self._say(f"trial {trial} (seed {seed}): dense warm-up {count(cfg.train.warmup, 'epoch')}, "
                  f"val {warm_val:.2f}%, test {_pct(warm_test)}; rewind point: iteration {at}")
        dense = copy.deepcopy(model.state_dict())
        rewind = dense if at == total else snapshot["state"]
        ticket = rewind if ticket_at == at else dense if ticket_at == total else snapshot["ticket"]
        return warmup, rewind, dense, ticket

    def _train(self, model, masks, data: TrialInputs, seed: int, k: int, epochs: float,
               criteria, label: str, on_step=None, check_every="round",
               lr: Optional[float] = None, segment: Optional[Segment] = None):
        """One training run (warm-up, round or ticket), or a segment of one, its checks told to
        the observers."""
        train, part = self.round_data.part(data.train, k)  # a round's part, in full-data epochs
        full = self._per_epoch(data) if part else None
        planned = segment.iterations if segment else planned_iterations(train, self.cfg, epochs)
        self.events.training_started(label, planned)

        def on_check(rec) -> None:
            self.events.checked(self._trial, k, rec)
            if self._epoch_seconds is None and rec.epoch > 0:
                self._epoch_seconds = (rec.time_train + rec.time_eval + rec.time_flow) / rec.epoch
                if not self._first_epoch_said:
                    self._first_epoch_said = True
                    self._say(self._first_epoch_estimate(self._epoch_seconds))

        try:
            return train_run(self.cfg, model, masks, train, data.val, seed, k, epochs,
                             criteria, on_check, self.compute, on_step, check_every, lr=lr,
                             segment=segment, count_per_epoch=full,
                             recorder=self.round_data.recorder if part else None)
        finally:
            self.events.training_ended()


def _check_fits(model: nn.Module, resume: Dict[str, Any], where: Optional[str]) -> None:
    """A saved trial state (a resume, or a finished search gone on from) must be of this
    network: each saved state its entries and shapes, each mask one of its weights' shapes.
    Files of another run are refused in one line before anything is loaded from them."""
    shape = lambda v: tuple(v.shape) if isinstance(v, torch.Tensor) else None
    want = {k: shape(v) for k, v in model.state_dict().items()}
    weights = {k: shape(p) for k, p in model.named_parameters()}
    states = [resume.get(k) for k in ("model", "rewind", "dense", "ticket")]
    fits = all(isinstance(s, dict) and {k: shape(v) for k, v in s.items()} == want
               for s in states if s is not None) and isinstance(resume.get("masks"), dict) and \
        all(weights.get(n) == shape(m) for n, m in resume["masks"].items())
    if not fits:
        raise UsageError(f"{where or 'the saved progress'}: the saved weights or masks of trial "
                         f"{resume.get('index')} are not of this {type(model).__name__} (other "
                         f"entries or shapes): they belong to another run; move the run "
                         f"directory away and run the command again")


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}%"



def _recipe_words(recipe: Optional[str], method: str) -> str:
    """The first line's account of what runs: the recipe in words and the method it is."""
    if recipe is None:
        return method
    words = f"recipe {recipe} ({describe(recipe)}"
    if find(recipe)[0] is find(DEFAULT_RECIPE)[0] and steps_of(recipe) is None \
            and data_of(recipe)[0] is None:  # allr-K as measured: its own steps, all the data
        words += ("; the recipe incop recommends (BENCHMARKS.md); for the seed's InCoP give "
                  "--prune_method ciap")
    return words + f"), that is {method},"


def _point_words(point: str) -> str:
    return {"warmup": "the end of the warm-up", "init": "the initial weights"}.get(
        point, f"{point} into the warm-up")
