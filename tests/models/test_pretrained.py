"""--net_pretrained (incop.models.pretrained): a state-dict file (read bounded, checked against
the architecture), and torchvision's cached ImageNet weights (a fake torchvision and a small
weight file stand in here); what is missing is one line."""
import sys
import types

import pytest
import torch
from torch import nn

from crafted_files import huge_storage, torch_bytes, write

from incop.base.errors import UsageError
from incop.models.architectures import build_model
from incop.models.pretrained import IMAGENET_SIZE, imagenet_model, load_pretrained
from incop.runs.layout import round_masks


def test_pretrained_round_trip_and_mismatch(tmp_path):
    a = build_model("lenet300", (1, 8, 8), 10)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    b = build_model("lenet300", (1, 8, 8), 10)
    load_pretrained(b, tmp_path / "a.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(UsageError, match="does not match the architecture"):
        load_pretrained(build_model("conv2", (1, 8, 8), 10), tmp_path / "a.pt")
    with pytest.raises(UsageError, match="no such file"):
        load_pretrained(b, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(UsageError, match="not a torch.save zip file"):
        load_pretrained(b, tmp_path / "junk.pt")


def test_pretrained_file_for_another_architecture(cli, tmp_path):
    import torch
    from incop.models.architectures import build_model
    torch.save(build_model("conv2", (1, 8, 8), 10).state_dict(), tmp_path / "conv2.pt")
    code, _, err = cli("run", "--net_arch", "lenet300", "--net_pretrained", str(tmp_path / "conv2.pt"),
                       "--output_dir", str(tmp_path / "o"), "--quiet")
    assert code == 2 and "does not match the architecture" in err and err.count("\n") == 1


def test_a_pretrained_state_dict_is_read_bounded_too(tmp_path):
    """--net_pretrained reads a file incop did not write."""
    from torch import nn

    from incop.base.errors import UsageError
    from incop.models.pretrained import load_pretrained

    path = write(tmp_path / "w.pt", huge_storage({"weight": torch.ones(5)}, 2**23))
    with pytest.raises(UsageError, match=r"^--net_pretrained .*times the file"):
        load_pretrained(nn.Linear(2, 2), path)
    good = write(tmp_path / "good.pt", torch_bytes(nn.Linear(2, 2).state_dict()))
    load_pretrained(nn.Linear(2, 2), good)


URL = "https://download.pytorch.org/models/vgg16-397923af.pth"


class TinyVGG(nn.Module):
    """torchvision's VGG layout (features, avgpool, classifier ending in Linear(., 1000)), small."""

    def __init__(self, weights=None):
        super().__init__()
        assert weights is None  # incop never asks torchvision to fetch weights
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(8))
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1000))
        self.seen = None

    def forward(self, x):
        self.seen = tuple(x.shape)
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@pytest.fixture
def fake_torchvision(monkeypatch, tmp_path):
    models = types.ModuleType("torchvision.models")
    models.vgg16 = TinyVGG
    models.VGG16_Weights = types.SimpleNamespace(IMAGENET1K_V1=types.SimpleNamespace(url=URL))
    tv = types.ModuleType("torchvision")
    tv.models = models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"


def _save_weights(path):
    torch.manual_seed(3)
    reference = TinyVGG()
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    return reference


def test_imagenet_weights_load_and_the_head_is_replaced(fake_torchvision):
    reference = _save_weights(fake_torchvision)
    model = imagenet_model("vgg16", (1, 28, 28), 10)
    net = model.net
    assert torch.equal(net.features[0].weight, reference.features[0].weight)
    assert torch.equal(net.classifier[0].weight, reference.classifier[0].weight)
    assert net.classifier[2].out_features == 10 and net.classifier[2].in_features == 8
    out = model(torch.randn(2, 1, 28, 28))  # grayscale 28 px in, 3 x 224 px to the network
    assert out.shape == (2, 10) and net.seen == (2, 3, IMAGENET_SIZE, IMAGENET_SIZE)
    assert "net.features.0.weight" in dict(model.named_parameters())


def test_cli_runs_from_imagenet_weights(fake_torchvision, cli, tmp_path, monkeypatch):
    import functools

    from incop.models import pretrained

    _save_weights(fake_torchvision)
    # the 224 px the network is fed is tested above; the command's path at 32 px costs a 50th
    monkeypatch.setattr(pretrained, "ImageNetInput",
                        functools.partial(pretrained.ImageNetInput, size=32))
    code, out, err = cli("run", "--net_arch", "vgg16", "--net_pretrained=1", "--prune_method", "sap",
                         "--net_warmup", "1", "--net_train_epochs", "1", "--exper_imp_total_iter",
                         "2", "--allow_untrained", "--quiet", "--output_dir", str(tmp_path / "o"))
    assert code == 0, err
    config = next((tmp_path / "o").rglob("config.json")).read_text()
    assert '"pretrained": "imagenet"' in config  # the seed's "1" is recorded as what it means
    masks = round_masks(next((tmp_path / "o").rglob("config.json")).parent, 0, 1)
    assert set(masks) == {"net.features.0.weight", "net.classifier.0.weight",
                          "net.classifier.2.weight"}


def test_missing_cached_weights_is_one_line(fake_torchvision):
    with pytest.raises(UsageError, match=r"not in its cache .*vgg16-397923af.pth.*"
                                         r"torchvision.models.vgg16\(weights='IMAGENET1K_V1'\)"):
        imagenet_model("vgg16", (3, 32, 32), 10)


def test_architecture_without_imagenet_weights(fake_torchvision):
    with pytest.raises(UsageError, match="no ImageNet weights for conv4"):
        imagenet_model("conv4", (3, 32, 32), 10)


@pytest.mark.parametrize("value", ["1", "imagenet"])
def test_without_torchvision_one_line_says_what_to_install(cli, tmp_path, monkeypatch, value):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    code, _, err = cli("run", "--net_arch", "vgg16", f"--net_pretrained={value}",
                       "--output_dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert "needs torchvision" in err and "pip install 'incop[torchvision]'" in err
    assert not list(tmp_path.rglob("progress.pt"))
