"""Regression tests for the independent audit and the first-time user (issue 12, items 4-13):
results belong to their run, bad inputs are one line, any architecture is counted once."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import incop
from incop.base.errors import UsageError
from incop.stopping.flows import InformationFlow, correlation_matrix
from incop.pruning.masks import Masks, prunable_parameters, weight_catalogue

from conftest import make_idx_dataset, write_idx

SRC = Path(__file__).resolve().parents[1] / "src" / "incop"


@pytest.fixture(scope="module")
def digits():
    from incop.data.datasets import load_splits
    return load_splits("digits", None, 0.1, seed=0)


def _pairs(d):
    return (d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)


def _cfg(method="sap", rounds=2, **prune):
    return incop.RunConfig(prune=incop.PruneConfig(method=method, **prune),
                           train=incop.TrainConfig(lr=0.05, momentum=0.9, epochs=1, warmup=1),
                           # structure tests: one short warm-up need not learn
                           experiment=incop.ExperimentConfig(imp_total_iter=rounds,
                                                             allow_untrained=True))


def _mlp(act):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), act(), nn.Linear(32, 10))


# ---------------------------------------------------------------- 4: a result belongs to its run

def test_another_model_in_the_same_output_dir_gets_its_own_results(digits, tmp_path):
    relu = incop.prune_model(_mlp(nn.ReLU), *_pairs(digits), _cfg(), output_dir=tmp_path)
    tanh = incop.prune_model(_mlp(nn.Tanh), *_pairs(digits), _cfg(), output_dir=tmp_path)
    assert tanh.run_dir != relu.run_dir
    fresh = incop.prune_model(_mlp(nn.Tanh), *_pairs(digits), _cfg())  # no output_dir
    assert [r["val_acc"] for r in tanh.rounds] == [r["val_acc"] for r in fresh.rounds]
    assert [r["val_acc"] for r in tanh.rounds] != [r["val_acc"] for r in relu.rounds]
    # other layer sizes: its own run, not a raw 'size mismatch'
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    assert incop.prune_model(wide, *_pairs(digits), _cfg(), output_dir=tmp_path).run_dir != relu.run_dir
    # other data: its own run
    train, val, test = _pairs(digits)
    half = (train[0][:700], train[1][:700])
    assert incop.prune_model(_mlp(nn.ReLU), half, val, test, _cfg(),
                             output_dir=tmp_path).run_dir != relu.run_dir


def test_another_model_under_a_pinned_run_name_is_refused(digits, tmp_path):
    cfg = _cfg()
    cfg.experiment.run_name = "pinned"
    incop.prune_model(_mlp(nn.ReLU), *_pairs(digits), cfg, output_dir=tmp_path)
    with pytest.raises(UsageError, match="holds a run with another configuration"):
        incop.prune_model(_mlp(nn.Tanh), *_pairs(digits), cfg, output_dir=tmp_path)


# ---------------------------------------------------------------- 5: config.json and progress.pt

# One 21-iteration warm-up at lr 0.01 leaves LeNet near chance on digits: these tests are about
# files and checks, not learning.
RUN = ["run", "--net_dataset", "digits", "--prune_method", "sap", "--net_warmup", "1",
       "--net_train_epochs", "1", "--exper_imp_total_iter", "2", "--quiet", "--run_name", "r",
       "--allow_untrained"]


def _run_dir(out: Path) -> Path:
    return out / "sap" / "lenet300" / "digits" / "r"


def test_hand_edited_config_does_not_relabel_results(cli, tmp_path):
    assert cli(*RUN, "--output_dir", str(tmp_path))[0] == 0
    path = _run_dir(tmp_path) / "config.json"
    cfg = json.loads(path.read_text())
    cfg["model"]["arch"] = "conv2"
    path.write_text(json.dumps(cfg))
    code, out, _ = cli("report", str(tmp_path), "--output", str(tmp_path / "rep"))
    assert code == 0
    rows = (tmp_path / "rep" / "report.csv").read_text()
    assert "lenet300" in rows and "conv2" not in rows
    assert "±" not in out  # one trial: no spread to show


def test_corrupt_config_is_repaired_by_a_rerun_and_skipped_by_report(cli, tmp_path):
    assert cli(*RUN, "--output_dir", str(tmp_path))[0] == 0
    assert cli(*RUN, "--output_dir", str(tmp_path), "--prune_p", "0.5", "--prune_q", "1",
               "--run_name", "r2")[0] == 0
    (_run_dir(tmp_path) / "config.json").write_text("{not json")
    code, out, err = cli(*RUN, "--output_dir", str(tmp_path))
    assert code == 0 and "re-run" not in out + err
    assert json.loads((_run_dir(tmp_path) / "config.json").read_text())["model"]["arch"] == "lenet300"
    # broken beyond repair (config.json invalid, no progress file): skipped with one warning
    (_run_dir(tmp_path) / "config.json").write_text("{not json")
    for f in ("progress.pt", "progress.prev.pt"):
        (_run_dir(tmp_path) / f).unlink()
    code, out, err = cli("report", str(tmp_path), "--output", str(tmp_path / "rep"))
    assert code == 0
    assert len(err.strip().splitlines()) == 1 and "skipping" in err and "config.json" in err
    assert "(0.5, 1)" in out and "(1, 2)" not in out


def test_truncated_progress_resumes_from_the_previous_one(cli, tmp_path):
    assert cli(*RUN, "--output_dir", str(tmp_path))[0] == 0
    run = _run_dir(tmp_path)
    before = json.loads((run / "rounds.json").read_text())
    blob = (run / "progress.pt").read_bytes()
    (run / "progress.pt").write_bytes(blob[:len(blob) // 2])
    code, out, err = cli(*RUN, "--output_dir", str(tmp_path))
    assert code == 0, err
    assert "progress.pt" in out and "progress.prev.pt" in out and "remove" not in out + err
    after = json.loads((run / "rounds.json").read_text())
    drop = {"time_train", "time_flow", "time_eval", "time_prune"}
    strip = lambda rs: [{k: v for k, v in r.items() if k not in drop} for r in rs]
    assert strip(after) == strip(before)


# ---------------------------------------------------------------- 6: labels and inputs

def test_idx_labels_outside_the_classes_are_refused(cli, tmp_path):
    files = make_idx_dataset(tmp_path / "d", n_train=600, n_test=20)
    labels = np.arange(600) % 10
    labels[[3, 7]] = [12, 255]
    write_idx(files["train-labels-idx1-ubyte"], labels)
    code, _, err = cli(*RUN[:1], "--net_dataset", "MNIST", "--data_dir", str(tmp_path / "d"),
                       "--output_dir", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "train-labels-idx1-ubyte" in err and "12, 255" in err


def test_wrong_idx_magic_is_called_a_wrong_magic_number(cli, tmp_path):
    files = make_idx_dataset(tmp_path / "d", n_train=600, n_test=20)
    write_idx(files["t10k-labels-idx1-ubyte"], np.zeros((20, 1, 1), dtype=np.uint8))  # 0x0803
    code, _, err = cli(*RUN[:1], "--net_dataset", "MNIST", "--data_dir", str(tmp_path / "d"),
                       "--output_dir", str(tmp_path / "o"))
    assert code == 2 and "wrong magic number 0x00000803" in err and "0x00000801" in err
    assert "truncated" not in err


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x):
        return {"logits": self.b(torch.relu(self.a(x.flatten(1))))}


@pytest.mark.parametrize("case,match", [
    ("float_labels", "float32.*integer class indices"),
    ("lengths", "x has 1294 samples and y has 1289"),
    ("gap", "not contiguous: classes \\[3\\] are missing"),
    ("negative", "negative"),
    ("dict", "returns a dict"),
    ("shape", "cannot take the training inputs of shape \\(1, 8, 8\\)"),
    ("val_label", "val labels go up to 10"),
    ("nan", "train inputs contain NaN"),
])
def test_bad_user_data_is_one_line(digits, case, match):
    (tx, ty), (vx, vy), test = _pairs(digits)
    tx, ty, vy = tx[:1294], ty[:1294], vy.clone()
    model = _mlp(nn.ReLU)
    if case == "float_labels":
        ty = ty.float()
    elif case == "lengths":
        ty = ty[:1289]
    elif case == "gap":
        ty = torch.where(ty == 3, torch.full_like(ty, 4), ty)
    elif case == "negative":
        ty = ty.clone()
        ty[0] = -1
    elif case == "dict":
        model = DictNet()
    elif case == "shape":
        model = nn.Sequential(nn.Linear(10, 10))
    elif case == "val_label":
        vy[0] = 10
    elif case == "nan":
        tx = tx.clone()
        tx[5, 0, 0, 0] = float("nan")
    with pytest.raises(UsageError, match=match) as err:
        incop.prune_model(model, (tx, ty), (vx, vy), test, _cfg())
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- 7: no test set, NaN in a loader

def test_no_test_set_with_output_dir_and_report(digits, cli, tmp_path):
    train, val, _ = _pairs(digits)
    result = incop.prune_model(_mlp(nn.ReLU), train, val, None, _cfg(), output_dir=tmp_path / "o")
    assert (result.run_dir / "figures" / "rounds.png").exists()
    assert all(r["test_acc"] is None for r in result.rounds)
    code, out, err = cli("report", str(result.run_dir), "--output", str(tmp_path / "rep"))
    assert code == 0 and "Traceback" not in err


def test_nan_inside_a_loader_is_reported_as_nan_inputs_not_a_learning_rate(digits):
    (tx, ty), val, test = _pairs(digits)
    tx = tx.clone()
    tx[-1, 0, 0, 0] = float("nan")  # in the last batch: the up-front check sees the first only
    loader = DataLoader(TensorDataset(tx, ty), batch_size=64)
    with pytest.raises(UsageError, match="inputs contain NaN") as err:
        incop.prune_model(_mlp(nn.ReLU), loader, val, test, _cfg())
    assert "--net_lr" not in str(err.value)


# ---------------------------------------------------------------- 8: validation size, paths

@pytest.mark.parametrize("argv,expected", [
    (["--net_val_size", "1.0"], "fraction must be below 1"),
    (["--net_val_size", "20"], "too few to measure accuracy"),
    (["--net_val_size", "0.01"], "gives 14 validation samples"),
    (["--output_dir="], "--output_dir is empty"),
    (["--run_name", "../../x"], "plain folder name"),
    (["--run_name", ".."], "plain folder name"),
])
def test_bad_sizes_and_paths_are_refused(cli, tmp_path, argv, expected):
    code, _, err = cli("run", "--output_dir", str(tmp_path), *argv, "--quiet")
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.parent.glob("x"))


def test_small_validation_split_when_the_user_insists(cli, tmp_path):
    code, _, err = cli(*RUN, "--net_val_size", "20", "--allow_small_val", "--output_dir", str(tmp_path))
    assert code == 0, err


# ---------------------------------------------------------------- 9: attention, include/exclude

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
    cfg = _cfg("sap", 2, include=["emb"])
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


# ---------------------------------------------------------------- 10: shared weights once

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
    result = incop.prune_model(Tied(), *_pairs(digits), _cfg())
    left = result.masks.remaining()
    assert result.rounds[-1]["total"] == 3392
    assert left == sum(int(p.count_nonzero()) for n, p in result.model.named_parameters()
                       if n in ("fc1.weight", "a.weight", "out.weight"))
    assert torch.equal(result.model.a.weight, result.model.b.weight)


# ---------------------------------------------------------------- 11: fewer than two layers

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
    result = incop.prune_model(net(), *_pairs(digits), _cfg(method))
    assert result.masks.names() == ["head.weight"] or result.masks.names() == ["1.weight"]
    assert result.masks.remaining() < result.masks.total()


def test_flow_criteria_on_one_layer_say_so(digits):
    with pytest.raises(UsageError, match=r"information flow needs at least two .*\(sap or lth\)"):
        incop.prune_model(LSTMNet(), *_pairs(digits), _cfg("ciap"))


# ---------------------------------------------------------------- 12: sequences, copies, compile

def test_linear_on_sequences_uses_features_as_units():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x = torch.randn(50, 7, 4)
    snap = InformationFlow(model, x).measure(model)
    assert snap.matrices[0].shape == (6, 3)
    with torch.no_grad():
        a = model[0](x).mean(1)
        b = model[2](model[1](model[0](x))).mean(1)
    assert torch.allclose(snap.matrices[0], correlation_matrix(a, b), atol=1e-10)
    expected = np.corrcoef(a.double().numpy().T, b.double().numpy().T)[:6, 6:]
    assert np.allclose(snap.matrices[0].numpy(), expected, atol=1e-9)


def test_information_flow_measures_a_deep_copy_and_a_compiled_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 5))
    x = torch.randn(40, 8)
    monitor = InformationFlow(model, x)
    reference = monitor.measure(model)
    twin = copy.deepcopy(model)
    assert torch.equal(monitor.measure(twin).rho, reference.rho)
    compiled = torch.compile(twin)  # never called: measuring uses the module it wraps
    assert torch.equal(monitor.measure(compiled).rho, reference.rho)


def test_prune_model_accepts_a_compiled_model(digits):
    result = incop.prune_model(torch.compile(_mlp(nn.ReLU)), *_pairs(digits), _cfg())
    assert result.masks.remaining() < result.masks.total()
    plain = incop.prune_model(_mlp(nn.ReLU), *_pairs(digits), _cfg())
    assert [r["val_acc"] for r in result.rounds] == [r["val_acc"] for r in plain.rounds]


# 13 (no import circles) is tests/test_layers.py::test_no_import_circles now.
