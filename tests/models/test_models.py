"""Every registered architecture (incop.models.architectures.MODELS) adapts to input channels,
size and class count, and both flows measure on it; names resolve; LeNet-5 is LeCun's."""
import pytest
import torch

from incop.base.errors import UsageError
from incop.models.architectures import MODELS, build_model
from incop.pruning.masks import prunable_parameters
from incop.stopping.flows import monitored_layers


# every registered architecture but torchvision's (which need torchvision, and 3-channel images)
OWN = [name for name, factory in MODELS.items()
       if not getattr(factory, "__qualname__", "").startswith("_torchvision_model.")]


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


def test_lenet5_is_lecuns_on_28x28_and_fits_small_inputs():
    from incop.models.architectures import build_model

    model = build_model("lenet5", (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 61_706  # LeNet-5's count
    shapes = [tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")]
    assert shapes == [(6, 1, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120), (10, 84)]
    for shape in ((1, 8, 8), (3, 32, 32), (1, 5, 5)):
        assert build_model("lenet5", shape, 7)(torch.zeros(2, *shape)).shape == (2, 7)
