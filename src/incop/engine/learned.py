"""Did the dense network learn? A search on a network still at chance is not a result: pruning
orders, flows and stops all measure noise. The baseline is what a network that ignores its
input can reach: the majority class's share of the validation labels (accuracy) and the
entropy of those labels (the cross-entropy of predicting the class frequencies)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import torch

from ..data.batches import DataSource, eval_batches
from ..config.schema import flag_name

# Accuracy must beat the majority class by this many points (fewer when the majority leaves
# less room), and some loss must fall below this fraction of the label entropy.
MARGIN_POINTS = 5.0
LOSS_FRACTION = 0.98


@dataclass(frozen=True)
class LabelBaseline:
    """What a network that ignores its input reaches on the validation labels."""

    chance_acc: float  # % of the majority class
    prior_loss: float  # nats: entropy of the label distribution
    samples: int

    @classmethod
    def of(cls, source: DataSource) -> "LabelBaseline":
        counts: Dict[int, int] = {}
        for _, y in eval_batches(source):
            for label, n in zip(*torch.unique(y.cpu(), return_counts=True)):
                counts[int(label)] = counts.get(int(label), 0) + int(n)
        total = sum(counts.values())
        shares = [n / total for n in counts.values()]
        return cls(100.0 * max(shares), -sum(s * math.log(s) for s in shares), total)

    @property
    def margin(self) -> float:
        """Points above the majority class that count as learning: at least MARGIN_POINTS and
        two standard errors of a guesser's accuracy on this many samples, never more than half
        the room left above the majority class."""
        p = self.chance_acc / 100
        two_se = 200.0 * math.sqrt(p * (1 - p) / max(self.samples, 1))
        return min(max(MARGIN_POINTS, two_se), (100.0 - self.chance_acc) / 2)


def untrained_reason(baseline: LabelBaseline, val_acc: float, val_loss: Optional[float],
                     train_loss: Optional[float]) -> Optional[str]:
    """Why the network counts as untrained (None when it learned). A network is learning when
    its accuracy is clearly above the majority class, or when its loss (training or validation)
    has clearly fallen below the label entropy: a slow learner's loss falls before its accuracy
    moves. So it is untrained when its accuracy is within the margin of the majority class and
    no loss fell below LOSS_FRACTION of the entropy, or, short of twice that margin, when no
    loss fell at all."""
    losses = [x for x in (train_loss, val_loss) if x is not None and math.isfinite(x)]
    best_loss = min(losses) if losses else None
    numbers = (f"validation accuracy {val_acc:.2f}% (majority class {baseline.chance_acc:.2f}%, "
               f"{baseline.samples} samples)"
               + (f", loss {best_loss:.4f} (label entropy {baseline.prior_loss:.4f})"
                  if best_loss is not None else ""))
    above = val_acc - baseline.chance_acc
    loss_fell = best_loss is not None and baseline.prior_loss > 0 and \
        best_loss < LOSS_FRACTION * baseline.prior_loss
    if above <= baseline.margin and not loss_fell:
        return numbers
    if not loss_fell and best_loss is not None and above <= 2 * baseline.margin:
        return numbers
    return None


def dense_verdict(warmup: Dict[str, Any], round0: Optional[Dict[str, Any]], warmup_epochs: float,
                  val: DataSource) -> Optional[str]:
    """The note for a dense network that did not learn (None when it did), judged on the
    trial's warm-up record, or on round 0's when there was no warm-up."""
    if warmup_epochs > 0:
        numbers = (warmup["warmup_val_acc"], warmup.get("warmup_val_loss"),
                   warmup["warmup_train_loss"])
        what = f"after its {warmup_epochs:g}-epoch warm-up"
    else:
        numbers = (round0["val_acc"], round0.get("val_loss"), round0.get("train_loss"))
        what = "after round 0 (no warm-up)"
    reason = untrained_reason(LabelBaseline.of(val), *numbers)
    return None if reason is None else f"the dense network did not learn {what}: {reason}"


def advice(arch: str, lr: float, momentum: float, warmup: float,
           name: Callable[[str], str] = flag_name) -> str:
    """What to try, in the order that has worked here (docs/training.md, 'When the network does not
    learn'); ``name`` says a setting as the user sets it (a flag, or an API config field)."""
    tips = []
    if not arch.endswith("_bn") and arch.startswith("vgg"):
        tips.append(f"the batch-norm variant {name('model.arch')} {arch}_bn")
    tips.append(f"more warm-up ({name('train.warmup')}, now {warmup:g})")
    tips.append(f"another learning rate ({name('train.lr')}, now {lr:g})")
    if momentum == 0:
        tips.append(f"{name('train.momentum')} 0.9")
    tips.append(f"a pretrained start ({name('model.pretrained')})")
    return "try " + ", ".join(tips)
