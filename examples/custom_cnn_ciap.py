"""Prune a CNN that incop's registry does not have, with ciap (InCoP-IF), on the bundled digits.

ciap is named here to show the information flow measured through batch norm on your own model;
it is the paper's method, not incop's recommendation (docs/methods.md measures it 0.9 to 2.1
points behind standard IMP's ticket). For a sparse network to use, leave the method out:
``incop.RunConfig()`` runs the recommended recipe (docs/api.md).

    python examples/custom_cnn_ciap.py [--rounds 5] [--epochs 8] [--warmup 10]
"""
import argparse

import torch
from torch import nn

import incop
from incop.data.datasets import load_splits


class SmallCNN(nn.Module):
    """Two convs with batch norm, a max-pool and two linear layers, for 8x8 digits."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.fc1, self.fc2 = nn.Linear(32 * 4 * 4, 64), nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()

    torch.manual_seed(0)
    data = load_splits("digits", None, val_size=0.1, seed=0)
    cfg = incop.RunConfig(
        prune=incop.PruneConfig(method="ciap", p=1.0, q=2.0),
        train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=args.epochs, warmup=args.warmup),
        experiment=incop.ExperimentConfig(imp_total_iter=args.rounds, device="auto"))
    result = incop.prune_model(SmallCNN(), (data.train_x, data.train_y), (data.val_x, data.val_y),
                               (data.test_x, data.test_y), cfg)
    for r in result.rounds:
        print(f"round {r['round']}: {r['remaining_pct']:6.2f}% remaining, {r['epochs']} epoch(s) "
              f"({r['stop_reason']}), val {r['val_acc']:.1f}%, test {r['test_acc']:.1f}%")
    zeros = sum(int((p == 0).sum()) for p in incop.prunable_parameters(result.model).values())
    print(f"final: {100 * result.remaining_fraction:.2f}% of prunable weights remain "
          f"({zeros} exact zeros in the returned model)")


if __name__ == "__main__":
    main()
