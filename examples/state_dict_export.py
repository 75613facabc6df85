"""Load a model from a state dict, prune it with the recommended recipe (allr-K: SAP pruning,
the trained weights kept, ALLR's rate), and export it two ways:
``torch.nn.utils.prune`` form (weight_orig / weight_mask) and plain weights with zeros.

    python examples/state_dict_export.py [--checkpoint my_mlp.pt] [--out output/exported/]

Without --checkpoint, a dense MLP is trained briefly on digits and saved first, standing in for
your own checkpoint. Data is given as DataLoaders here.
"""
import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import incop
from incop.data.datasets import load_splits
from incop.engine.training import evaluate


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=Path("output/exported"))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2, help="epochs a round (allr-K's K)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    data = load_splits("digits", None, val_size=0.1, seed=0)
    train = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(data.val_x, data.val_y), batch_size=256)
    test = DataLoader(TensorDataset(data.test_x, data.test_y), batch_size=256)

    if args.checkpoint is None:  # stand-in for a checkpoint of your own
        args.checkpoint = args.out / "dense_mlp.pt"
        dense = make_mlp()
        opt = torch.optim.SGD(dense.parameters(), lr=0.05, momentum=0.9)
        for _ in range(10):
            for x, y in train:
                opt.zero_grad()
                nn.functional.cross_entropy(dense(x), y).backward()
                opt.step()
        torch.save(dense.state_dict(), args.checkpoint)

    model = make_mlp()
    model.load_state_dict(torch.load(args.checkpoint, weights_only=True))
    print(f"loaded {args.checkpoint}: test accuracy {evaluate(model, test)[0]:.1f}%")

    cfg = incop.RunConfig(train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=args.epochs, warmup=2),
                          experiment=incop.ExperimentConfig(imp_total_iter=args.rounds))
    result = incop.prune_model(model, train, val, test, cfg)
    print(f"pruned to {100 * result.remaining_fraction:.2f}% of weights, test accuracy "
          f"{result.rounds[-1]['test_acc']:.1f}%")

    torch.save(result.torch_prune_model().state_dict(), args.out / "pruned_torch_prune.pt")
    torch.save(result.plain_state_dict(), args.out / "pruned_plain.pt")
    result.masks.save(args.out / "masks.pt")

    reloaded = make_mlp()  # an ordinary, unpruned instance of the same class
    reloaded.load_state_dict(torch.load(args.out / "pruned_plain.pt", weights_only=True))
    print(f"plain export reloaded: test accuracy {evaluate(reloaded, test)[0]:.1f}%, "
          f"{sum(int((p == 0).sum()) for p in incop.prunable_parameters(reloaded).values())} zeros")
    print(f"wrote {', '.join(sorted(p.name for p in args.out.iterdir()))} to {args.out}")


if __name__ == "__main__":
    main()
