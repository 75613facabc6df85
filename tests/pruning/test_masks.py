"""Which weights are pruned and how masks behave (incop.pruning.masks): Conv and Linear weights
and attention projections by default, the catalogue says why each weight is skipped and prints
short, --prune_include/--prune_exclude change it, a shared weight is counted and masked once,
models with one linear layer can be pruned (flow criteria say they cannot), and Masks is a
mapping every function taking masks takes as it takes a dict."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import run_dir, small_run

import incop
from conftest import api_config, split_pairs
from incop.base.errors import UsageError
from incop.pruning.masks import Masks, prunable_parameters, weight_catalogue


def _small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 10))


def test_prunable_parameters_are_conv_and_linear_weights():
    assert list(prunable_parameters(_small_net())) == ["0.weight", "4.weight"]


def _lenet300():
    from incop.models.architectures import build_model

    torch.manual_seed(0)
    return build_model("lenet300", (1, 28, 28), 10)


def _no_values(text: str) -> None:
    assert "tensor(" not in text and "Parameter containing" not in text, text


def test_a_weight_entry_prints_its_name_shape_dtype_and_status_not_its_values():
    from incop.pruning.masks import weight_catalogue

    fc1 = weight_catalogue(_lenet300())[0]
    for text in (repr(fc1), str(fc1)):
        _no_values(text)
        assert text == "WeightEntry('fc1.weight', shape=(300, 784), dtype=float32, pruned: Linear)"
    emb = weight_catalogue(nn.Sequential(nn.Embedding(20, 16), nn.Linear(16, 4)))[0]
    assert repr(emb).startswith("WeightEntry('0.weight', shape=(20, 16), dtype=float32, skipped: "
                                "embedding, not pruned by default")
    assert fc1.status == "pruned" and emb.status.startswith("skipped (embedding")


def test_the_catalogue_prints_as_a_short_table_with_a_total_line():
    from incop.pruning.masks import weight_catalogue

    catalogue = weight_catalogue(_lenet300())
    for text in (repr(catalogue), str(catalogue), repr([catalogue])):
        _no_values(text)
    lines = repr(catalogue).splitlines()
    assert len(lines) < 15 and str(catalogue) == repr(catalogue)
    for name, shape, size in (("fc1.weight", "300x784", "235,200"),
                              ("fc2.weight", "100x300", "30,000"),
                              ("fc3.weight", "10x100", "1,000")):
        line = next(l for l in lines if l.startswith(name))
        assert shape in line and "float32" in line and size in line and "pruned (Linear)" in line
    assert lines[-1] == "pruned: 3 of 3 weight matrices, 266,200 of 266,200 weights (100.0%)"
    # skipped weights say why; a shared weight is listed but counted once
    model = nn.Sequential(nn.Embedding(20, 16), nn.Linear(16, 16), nn.Linear(16, 16))
    model[2].weight = model[1].weight
    lines = repr(weight_catalogue(model, exclude=["1"])).splitlines()
    assert "skipped (embedding, not pruned by default" in lines[2]
    assert "skipped (excluded by --prune_exclude 1)" in lines[3]
    assert "skipped (shared with 1.weight, counted once)" in lines[4]
    assert lines[-1] == "pruned: 0 of 2 weight matrices, 0 of 576 weights (0.0%)"
    assert "no weight matrix" in repr(weight_catalogue(nn.ReLU()))


def test_the_catalogue_is_still_a_list():
    from incop.pruning.masks import WeightEntry, weight_catalogue

    model = _lenet300()
    catalogue = weight_catalogue(model)
    assert isinstance(catalogue, list) and len(catalogue) == 3
    assert [e.name for e in catalogue] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert catalogue[0].param is model.fc1.weight and catalogue[-1].name == "fc3.weight"
    entries = list(catalogue)
    assert catalogue == entries and entries == catalogue and catalogue == weight_catalogue(model)
    assert catalogue[:2] == entries[:2] and len(catalogue[1:]) == 2
    assert catalogue != entries[:2]
    assert catalogue[0] == WeightEntry("fc1.weight", model.fc1.weight, True, "Linear")
    assert all(e.pruned for e in catalogue) and catalogue.count(catalogue[1]) == 1
    assert list(prunable_parameters(model)) == [e.name for e in catalogue]


# One 21-iteration warm-up at lr 0.01 leaves LeNet near chance on digits: these tests are about
# files and checks, not learning.
RUN = small_run(net_lr=None, net_momentum=None, exper_imp_total_iter=2, run_name="r",
                allow_untrained=True)


def _run_dir(out: Path) -> Path:
    return run_dir(*RUN, "--output_dir", out)


def test_attention_projections_are_pruned_by_default():
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32)
    names = list(prunable_parameters(layer))
    assert names == ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight",
                     "linear2.weight"]


class Seq(nn.Module):
    """Embedding + Transformer encoder + LSTM + Linear head, on token ids (N, T)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 16)
        self.enc = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.rnn = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h, _ = self.rnn(self.enc(self.emb(x)))
        return self.head(h.mean(1))


def test_catalogue_says_why_each_weight_is_skipped_and_patterns_change_it():
    entries = {e.name: e for e in weight_catalogue(Seq())}
    assert not entries["emb.weight"].pruned and "embedding" in entries["emb.weight"].reason
    assert not entries["rnn.weight_ih_l0"].pruned and "LSTM" in entries["rnn.weight_ih_l0"].reason
    assert entries["enc.self_attn.in_proj_weight"].pruned
    chosen = prunable_parameters(Seq(), include=["emb", "rnn.weight_*"], exclude=["head"])
    assert {"emb.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0"} <= set(chosen)
    assert "head.weight" not in chosen
    with pytest.raises(UsageError, match="'nope' .* matches no weight"):
        weight_catalogue(Seq(), exclude=["nope"])


def test_sequence_model_pruned_through_the_api_with_include():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 20, (400, 6), generator=g)
    y = (x[:, 0] % 4)
    cfg = api_config("sap", 2, include=["emb"])
    result = incop.prune_model(Seq(), (x[:300], y[:300]), (x[300:], y[300:]), None, cfg)
    assert "emb.weight" in result.masks.names()
    assert "enc.self_attn.in_proj_weight" in result.masks.names()
    layer = dict(result.model.named_parameters())["enc.self_attn.in_proj_weight"]
    assert int((layer == 0).sum()) == int((result.masks["enc.self_attn.in_proj_weight"] == 0).sum()) > 0


def test_cli_exclude_shows_in_the_per_layer_table(cli, tmp_path):
    code, out, err = cli(*RUN, "--prune_exclude", "fc3", "--output_dir", str(tmp_path))
    assert code == 0, err
    line = next(l for l in out.splitlines() if l.strip().startswith("fc3.weight"))
    assert "skipped (excluded by --prune_exclude fc3)" in line and "100.00" in line
    rows = json.loads((_run_dir(tmp_path) / "layers.json").read_text())
    assert {r["layer"] for r in rows if r["status"] == "pruned"} == {"fc1.weight", "fc2.weight"}


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.a, self.b = nn.Linear(64, 32), nn.Linear(32, 32), nn.Linear(32, 32)
        self.b.weight = self.a.weight
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        return self.out(torch.relu(self.b(torch.relu(self.a(torch.relu(self.fc1(x.flatten(1))))))))


def test_shared_weights_are_counted_and_masked_once(digits):
    masks = Masks.ones_like(Tied())
    assert masks.total() == 3392 and "b.weight" not in masks.names()
    shared = next(e for e in weight_catalogue(Tied()) if e.name == "b.weight")
    assert not shared.pruned and "shared with a.weight" in shared.reason
    result = incop.prune_model(Tied(), *split_pairs(digits), api_config())
    left = result.masks.remaining()
    assert result.rounds[-1]["total"] == 3392
    assert left == sum(int(p.count_nonzero()) for n, p in result.model.named_parameters()
                       if n in ("fc1.weight", "a.weight", "out.weight"))
    assert torch.equal(result.model.a.weight, result.model.b.weight)


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.LSTM(8, 16, batch_first=True), nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.rnn(x.reshape(len(x), 8, 8))[0][:, -1])


class EmbNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(17, 8), nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.emb(x.flatten(1).long().clamp(0, 16)).mean(1))


@pytest.mark.parametrize("net", [LSTMNet, EmbNet, lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10))])
@pytest.mark.parametrize("method", ["sap", "lth"])
def test_models_with_one_linear_layer_can_be_pruned(digits, net, method):
    torch.manual_seed(0)
    result = incop.prune_model(net(), *split_pairs(digits), api_config(method))
    assert result.masks.names() == ["head.weight"] or result.masks.names() == ["1.weight"]
    assert result.masks.remaining() < result.masks.total()


def test_flow_criteria_on_one_layer_say_so(digits):
    with pytest.raises(UsageError, match=r"information flow needs at least two .*\(sap or lth\)"):
        incop.prune_model(LSTMNet(), *split_pairs(digits), api_config("ciap"))


def test_every_function_taking_masks_takes_masks_and_dicts_alike(tmp_path):
    from torch import nn

    import incop
    from incop.deploy.sparse_inference import measure
    from incop.pruning.torch_prune import to_torch_prune

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    plain = {"1.weight": (torch.rand(32, 64) > 0.8).float(), "3.weight": torch.ones(10, 32)}
    masks = incop.Masks(plain)
    masks.save(tmp_path / "m.pt")
    loaded = incop.Masks.load(tmp_path / "m.pt")
    assert dict(loaded).keys() == plain.keys() and "1.weight" in loaded
    assert torch.equal(loaded["1.weight"], plain["1.weight"])
    for given in (masks, loaded, plain):
        fast, m = incop.fastest_sparse_model(model, given, (1, 8, 8), batch=4, repeats=1, warmup=0)
        assert m["max_abs_diff"] < 1e-5
        measure(model, given, (1, 8, 8), 2, 1, 0)
        incop.export_model(model, given, tmp_path / "d.pt", "sparse")
        incop.save_sparse(model, given, tmp_path / "s.pt")
        to_torch_prune(__import__("copy").deepcopy(model), given)
    assert masks == masks and masks != loaded and len({masks, loaded}) == 2
