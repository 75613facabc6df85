"""The Python API on models outside the registry: prune_model, PyTorch pruning methods, masks
in and out of torch.nn.utils.prune form, and the examples."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, TensorDataset

import incop
from incop.pruning.masks import Masks, prunable_parameters
from incop.pruning.rules import SAP, LayerwiseMagnitude
from incop.pruning.torch_prune import (MagnitudePruning, SAPPruning, masks_from_torch_prune,
                                       to_torch_prune)
from incop.engine.training import evaluate

ROOT = Path(__file__).resolve().parents[1]


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


def _linear_stack():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 20), nn.ReLU(), nn.Linear(20, 5))


def test_sap_as_torch_global_unstructured_matches_incop_rule_twice():
    model = _linear_stack()
    params = [(model[i], "weight") for i in (0, 2, 4)]
    names = [f"{i}.weight" for i in (0, 2, 4)]
    weights = {n: model[i].weight.detach().clone() for n, i in zip(names, (0, 2, 4))}
    masks = Masks({n: torch.ones_like(w) for n, w in weights.items()})
    for _ in range(2):  # the second call must prune only survivors, as SAP on survivors would
        prune.global_unstructured(params, pruning_method=SAPPruning, p=1.0, q=2.0)
        masks, info = SAP(1.0, 2.0)(weights, masks)
        for n, i in zip(names, (0, 2, 4)):
            assert torch.equal(model[i].weight_mask, masks[n])
    assert 0 < masks.remaining() < masks.total()


def test_sap_and_magnitude_per_layer_apply():
    model = _linear_stack()
    w = model[0].weight.detach().clone()
    SAPPruning.apply(model[0], "weight", p=0.5, q=1.0)
    expected, _ = SAP(0.5, 1.0)({"w": w}, Masks({"w": torch.ones_like(w)}))
    assert torch.equal(model[0].weight_mask, expected["w"])
    w2 = model[2].weight.detach().clone()
    MagnitudePruning.apply(model[2], "weight", ratio=0.2)
    expected, _ = LayerwiseMagnitude(0.2)({"w": w2}, Masks({"w": torch.ones_like(w2)}))
    assert torch.equal(model[2].weight_mask, expected["w"]) and int(model[2].weight_mask.sum()) == 640


def test_export_to_torch_prune_and_plain_weights(tmp_path):
    model = _linear_stack()
    g = torch.Generator().manual_seed(2)
    masks = Masks({n: (torch.rand(p.shape, generator=g) > 0.4).float()
                   for n, p in prunable_parameters(model).items()}).bind(model)
    masks.apply()
    x = torch.randn(7, 30)
    expected = model(x)
    exported = to_torch_prune(copy.deepcopy(model), masks)
    sd = exported.state_dict()
    assert {"0.weight_orig", "0.weight_mask", "4.weight_mask"} <= set(sd) and "0.weight" not in sd
    assert torch.allclose(exported(x), expected)
    roundtrip = masks_from_torch_prune(exported, make_plain=False)  # reads, does not modify
    assert all(torch.equal(roundtrip[n], masks[n]) for n in masks)
    from incop.pruning.torch_prune import remove_reparametrization
    plain = remove_reparametrization(exported).state_dict()
    fresh = _linear_stack()
    fresh.load_state_dict(plain)  # strict: the keys of an unpruned model
    assert torch.allclose(fresh(x), expected)
    assert int((fresh[0].weight == 0).sum()) == int((masks["0.weight"] == 0).sum())
    masks.save(tmp_path / "m.pt")
    loaded = Masks.load(tmp_path / "m.pt")
    assert loaded.names() == masks.names() and all(torch.equal(loaded[n], masks[n].cpu()) for n in masks)


def test_import_from_model_pruned_by_torch():
    model = _linear_stack()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    prune.random_unstructured(model[2], "weight", amount=0.3)
    torch_masks = {0: model[0].weight_mask.clone(), 2: model[2].weight_mask.clone()}
    masks = masks_from_torch_prune(model)
    assert masks.names() == ["0.weight", "2.weight", "4.weight"]
    assert torch.equal(masks["0.weight"], torch_masks[0]) and torch.equal(masks["2.weight"], torch_masks[2])
    assert torch.all(masks["4.weight"] == 1)  # not pruned by torch: all survive
    # the model is plain again, pruned entries zero, and incop can continue from these masks
    assert isinstance(model[0].weight, nn.Parameter) and torch.all(model[0].weight[torch_masks[0] == 0] == 0)
    new, _ = SAP(1.0, 2.0)({n: p.detach() for n, p in prunable_parameters(model).items()}, masks)
    assert all(torch.all(new[n] <= masks[n]) for n in masks) and new.remaining() < masks.remaining()


def test_criterion_from_model_in_a_hand_loop():
    model = _linear_stack()
    x = torch.randn(200, 30)
    crit = incop.InformationFlowCriterion.from_model(model, x, epsilon=0.01)
    d = crit.check(model)
    assert d.stop and d.distance == pytest.approx(0.0, abs=1e-12)  # unchanged network: flow is back
    with torch.no_grad():
        model[2].weight.mul_(-1)
    d = crit.check(model)  # the signed mean moves little on an untrained net, but it moves
    assert not d.stop and d.distance > 0.01
    y = torch.randint(0, 5, (200,))
    g = incop.GradientFlowCriterion.from_model(_linear_stack(), x, y, epsilon=0.1)
    assert g.check(_linear_stack()).distance == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("script,args,expect", [
    ("custom_cnn_ciap.py", ["--rounds", "2", "--epochs", "2", "--warmup", "2"], "final:"),
    ("state_dict_export.py", ["--rounds", "2", "--epochs", "1"], "plain export reloaded"),
    ("callback_loop.py", ["--rounds", "2", "--max_epochs", "2"], "round 2:"),
])
def test_examples_run(script, args, expect, tmp_path):
    extra = ["--out", str(tmp_path / "exp")] if script == "state_dict_export.py" else []
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args, *extra],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout
    if script == "state_dict_export.py":
        assert {p.name for p in (tmp_path / "exp").iterdir()} >= {"pruned_plain.pt", "pruned_torch_prune.pt", "masks.pt"}


def _python_block(text: str) -> str:
    start = text.index("```python") + len("```python")
    return text[start:text.index("```\n", start)]


def test_the_readme_python_task_works_as_written(tmp_path, monkeypatch):
    code = _python_block((ROOT / "README.md").read_text())
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert 0 < namespace["result"].remaining_fraction < 1
    assert (tmp_path / "masks.pt").exists()


def test_the_api_page_example_works_as_written(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "api.md").read_text()
    section = text[text.index("# Python API"):]
    code = section[section.index("```python") + len("```python"):section.index("```\n", section.index("```python") + 9)]
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)
    result = namespace["result"]
    assert result.rounds[-1]["remaining"] == incop.pruning.rules.target_count(
        result.masks.total(), 10) and result.target_reached
    assert len(result.ablations) == 6 and len(result.tickets) == 1
    fresh = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    fresh.load_state_dict(torch.load(tmp_path / "pruned.pt"))
    assert int((fresh[1].weight == 0).sum()) == int((result.masks["1.weight"] == 0).sum())


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
