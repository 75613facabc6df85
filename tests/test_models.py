"""Every registered model adapts to input channels, size and class count."""
import pytest
import torch

from incop.base.errors import UsageError
from incop.stopping.flows import monitored_layers
from incop.pruning.masks import prunable_parameters
from incop.models.architectures import MODELS, build_model
from incop.models.pretrained import load_pretrained

OWN = ["lenet300", "conv2", "conv4", "conv6", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn",
       "resnet18", "resnet20", "alexnet"]


@pytest.mark.parametrize("arch", OWN)
@pytest.mark.parametrize("shape,classes", [((1, 8, 8), 10), ((1, 28, 28), 10), ((3, 32, 32), 100)])
def test_models_adapt(arch, shape, classes):
    model = build_model(arch, shape, classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    assert len(prunable_parameters(model)) >= 3


def test_seed_names_resolve():
    assert MODELS.canonical("VGG16") == "vgg16" and MODELS.canonical("ResNet-18") == "resnet18"
    assert MODELS.canonical("lenet_300_100") == "lenet300"


def test_resnet_shortcuts_are_not_monitored():
    model = build_model("resnet20", (3, 32, 32), 10)
    names = [n for n, _ in monitored_layers(model, torch.zeros(1, 3, 32, 32))]
    assert len(names) == 1 + 9 * 2 + 1 and not any("shortcut" in n for n in names)
    assert names[0] == "conv1" and names[-1] == "fc"
    assert any("shortcut" in n for n in prunable_parameters(model))  # still pruned


def test_torchvision_models_need_torchvision():
    try:
        import torchvision  # noqa: F401
        pytest.skip("torchvision importable here")
    except Exception:
        pass
    with pytest.raises(UsageError, match="torchvision"):
        build_model("densenet", (3, 32, 32), 10)


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


@pytest.mark.parametrize("arch", OWN)
def test_both_flows_measure_on_every_registered_model(arch):
    from incop.stopping.flows import GradientFlow, InformationFlow
    from incop.pruning.masks import Masks

    torch.manual_seed(0)
    model = build_model(arch, (3, 16, 16), 10)
    x, y = torch.randn(12, 3, 16, 16), torch.randint(0, 10, (12,))
    info = InformationFlow(model, x, batch_size=5)
    snap = info.measure(model)
    assert len(snap.rho) == len(info.layer_names) - 1 and torch.isfinite(snap.rho).all()
    assert not any("shortcut" in n for n in info.layer_names)
    masks = Masks.ones_like(model)
    g = GradientFlow(model, x, y, batch_size=5).measure(model, masks)
    assert len(g) == len(masks) and torch.isfinite(g).all() and bool((g > 0).any())
