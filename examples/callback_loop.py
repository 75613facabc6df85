"""Train your own way and ask incop after every epoch whether to stop (InCoP-IF as a callback),
with the pruning done by torch.nn.utils.prune and incop's SAP method.

    python examples/callback_loop.py [--rounds 4] [--max_epochs 10] [--epsilon 0.02]
"""
import argparse
import copy

import torch
from torch import nn
from torch.nn.utils import prune

import incop
from incop.data.datasets import load_splits


def train_one_epoch(model, opt, x, y, batch_size=64):
    model.train()
    for idx in torch.randperm(len(y)).split(batch_size):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max_epochs", type=int, default=10)
    ap.add_argument("--epsilon", type=float, default=0.02)
    args = ap.parse_args()

    torch.manual_seed(0)
    d = load_splits("digits", None, val_size=0.1, seed=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(10):  # dense warm-up
        train_one_epoch(model, opt, d.train_x, d.train_y)
    print(f"dense: val {accuracy(model, d.val_x, d.val_y):.1f}%")

    # the reference flows of the dense network, and the rewind point
    stopper = incop.InformationFlowCriterion.from_model(model, d.train_x[:1000], epsilon=args.epsilon)
    rewind = copy.deepcopy(model.state_dict())
    layers = [(m, "weight") for m in model if isinstance(m, nn.Linear)]

    for rnd in range(1, args.rounds + 1):
        prune.global_unstructured(layers, pruning_method=incop.SAPPruning, p=1.0, q=2.0)
        for i, (m, _) in enumerate(layers):  # rewind: the masks stay, the weights go back
            index = list(model).index(m)
            m.weight_orig.data.copy_(rewind[f"{index}.weight"])
            m.bias.data.copy_(rewind[f"{index}.bias"])
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for epoch in range(1, args.max_epochs + 1):
            train_one_epoch(model, opt, d.train_x, d.train_y)
            decision = stopper.check(model)
            if decision.stop:
                break
        kept = sum(int(m.weight_mask.sum()) for m, _ in layers)
        total = sum(m.weight_mask.numel() for m, _ in layers)
        print(f"round {rnd}: {100 * kept / total:.1f}% remaining, stopped after {epoch} epoch(s) "
              f"(distance {decision.distance:.4f}, {'flow back' if decision.stop else 'max epochs'}), "
              f"val {accuracy(model, d.val_x, d.val_y):.1f}%")


if __name__ == "__main__":
    main()
