"""The Python API (incop.api) on models outside the registry: prune_model with tensors and data
loaders, an output folder that resumes, what it says it runs by default."""
import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import incop
from incop.engine.training import evaluate
from incop.pruning.masks import prunable_parameters


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        return self.head(nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2).flatten(1))


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.a, self.b = nn.Linear(64, 32), nn.Linear(32, 32), nn.Linear(32, 32)
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        h = torch.relu(self.inp(x.flatten(1)))
        h = torch.relu(h + self.b(torch.relu(self.a(h))))  # residual connection
        return self.out(h)


@pytest.fixture(scope="module")
def digits():
    from incop.data.datasets import load_splits
    return load_splits("digits", None, 0.1, seed=0)


def _cfg(method="sap", rounds=3):
    return incop.RunConfig(prune=incop.PruneConfig(method=method),
                           train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=2, warmup=2),
                           experiment=incop.ExperimentConfig(imp_total_iter=rounds))


@pytest.mark.parametrize("net", [BNNet, ResidualNet])
@pytest.mark.parametrize("method", ["sap", "ciap", "giap"])
def test_prune_model_with_tensors(digits, net, method):
    torch.manual_seed(0)
    model = net()
    before = copy.deepcopy(model.state_dict())
    d = digits
    result = incop.prune_model(model, (d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y),
                               _cfg(method))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    assert [r["round"] for r in result.rounds] == [0, 1, 2]
    remaining = [r["remaining"] for r in result.rounds]
    assert remaining[0] > remaining[1] > remaining[2] == result.masks.remaining()
    for name, p in prunable_parameters(result.model).items():
        assert torch.all(p[result.masks[name] == 0] == 0)
    # the reported test accuracy is the returned model's
    assert evaluate(result.model, (d.test_x, d.test_y))[0] == pytest.approx(result.rounds[-1]["test_acc"])


def test_prune_model_with_dataloaders(digits):
    d = digits
    torch.manual_seed(0)
    loaders = [DataLoader(TensorDataset(x, y), batch_size=b, shuffle=s) for x, y, b, s in
               ((d.train_x, d.train_y, 64, True), (d.val_x, d.val_y, 50, False), (d.test_x, d.test_y, 70, False))]
    result = incop.prune_model(ResidualNet(), *loaders, _cfg("ciap"))
    assert len(result.rounds) == 3 and result.rounds[0]["stop_reason"] == "information_flow"
    # loader evaluation agrees with tensor evaluation of the same data
    assert evaluate(result.model, loaders[2])[0] == pytest.approx(evaluate(result.model, (d.test_x, d.test_y))[0])


def test_prune_model_output_dir_resumes_and_returns_saved_result(digits, tmp_path):
    d = digits
    args = (BNNet(), (d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y), _cfg("sap", 2))
    first = incop.prune_model(*args, output_dir=tmp_path)
    assert (first.run_dir / "rounds.csv").exists() and first.run_dir.parts[-4:-1] == ("sap", "BNNet", "custom")
    again = incop.prune_model(*args, output_dir=tmp_path)
    assert again.rounds == first.rounds
    assert all(torch.equal(again.masks[k].cpu(), first.masks[k].cpu()) for k in first.masks)
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(), first.model.state_dict().values()))


def test_prune_model_says_what_it_runs_by_default_and_is_silent_on_request(capsys):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 8, generator=g), torch.arange(200) % 2
    x[:, 0] += 8 * y
    cfg = incop.RunConfig(train=incop.TrainConfig(warmup=2, lr=0.1, momentum=0.9),
                          experiment=incop.ExperimentConfig(imp_total_iter=2))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    result = incop.prune_model(model, (x, y), (x[:60], y[:60]), config=cfg)
    out = capsys.readouterr().out
    assert "recipe allr-2 (SAP pruning, 2 epochs a round" in out.splitlines()[0]
    assert "trial 0 round 1:" in out and result.config.prune.recipe == "allr-2"
    assert result.config.train.epochs == 2.0 and result.notes == []
    incop.prune_model(model, (x, y), (x[:60], y[:60]), config=cfg, echo=None)
    assert capsys.readouterr().out == ""
