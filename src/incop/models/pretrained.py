"""Pretrained starts: a local state-dict file, or torchvision's ImageNet weights (the authors'
start: ``--net_pretrained`` defaults to pretrained in their code) from torchvision's cache.
Nothing is downloaded here."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch
from torch import nn

from ..base.bounded import load_torch
from ..base.errors import UsageError

IMAGENET_WORDS = ("1", "true", "imagenet", "pretrained")
IMAGENET_SIZE = 224
# incop's name -> (torchvision's builder, its weights enum); IMAGENET1K_V1 of each
IMAGENET_MODELS: Dict[str, Tuple[str, str]] = {
    "vgg11": ("vgg11", "VGG11_Weights"), "vgg11_bn": ("vgg11_bn", "VGG11_BN_Weights"),
    "vgg16": ("vgg16", "VGG16_Weights"), "vgg16_bn": ("vgg16_bn", "VGG16_BN_Weights"),
    "resnet18": ("resnet18", "ResNet18_Weights"), "alexnet": ("alexnet", "AlexNet_Weights"),
    "densenet": ("densenet121", "DenseNet121_Weights"),
    "googlenet": ("googlenet", "GoogLeNet_Weights"),
}


def wants_imagenet(value: Optional[str]) -> bool:
    """Whether ``--net_pretrained`` asks for ImageNet weights (the seed spells it 1)."""
    return value is not None and str(value).strip().lower() in IMAGENET_WORDS


class ImageNetInput(nn.Module):
    """An ImageNet network fed as the authors feed it: inputs resized to 224 px (bilinear) and a
    single channel repeated to three."""

    def __init__(self, net: nn.Module, size: int = IMAGENET_SIZE) -> None:
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                          align_corners=False)
        return self.net(x)


def imagenet_weights_file(arch: str) -> Tuple[str, Path]:
    """(torchvision builder, where torchvision caches its ImageNet weights for ``arch``)."""
    if arch not in IMAGENET_MODELS:
        raise UsageError(f"--net_pretrained imagenet: no ImageNet weights for {arch}; use one of "
                         f"{', '.join(IMAGENET_MODELS)}, or pass a local state-dict file")
    tvm = _torchvision_models(arch)
    builder, enum = IMAGENET_MODELS[arch]
    url = getattr(tvm, enum).IMAGENET1K_V1.url
    return builder, Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def imagenet_model(arch: str, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """torchvision's ``arch`` with its ImageNet weights read from the cache, the last Linear
    replaced by a fresh one for ``num_classes``, wrapped to take ``input_shape`` images."""
    builder, path = imagenet_weights_file(arch)
    if input_shape[0] not in (1, 3):
        raise UsageError(f"--net_pretrained imagenet takes 1- or 3-channel images, not "
                         f"{input_shape[0]}")
    if not path.is_file():
        raise UsageError(f"--net_pretrained imagenet: torchvision's {arch} weights are not in its "
                         f"cache ({path}); fetch them once where there is a network with python "
                         f"-c \"import torchvision; torchvision.models.{builder}(weights="
                         f"'IMAGENET1K_V1')\" (or copy the file there; TORCH_HOME moves the "
                         f"cache), or pass a local state-dict file")
    model = getattr(_torchvision_models(arch), builder)(weights=None)
    load_pretrained(model, path, flag="--net_pretrained imagenet")
    _replace_last_linear(model, num_classes)
    return ImageNetInput(model)


def _torchvision_models(arch: str):
    try:
        import torchvision.models as tvm
    except Exception:  # absent, or a build that fails at import beside this torch
        raise UsageError(f"--net_pretrained imagenet needs torchvision (for {arch}'s ImageNet "
                         f"weights), which is not importable; install it (pip install "
                         f"'incop[torchvision]') or pass a local state-dict file") from None
    return tvm


def _replace_last_linear(model: nn.Module, num_classes: int) -> None:
    name, last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(last.in_features, num_classes))


def load_pretrained(model: nn.Module, path: Union[str, Path],
                    flag: str = "--net_pretrained") -> None:
    """Load a local state dict (nothing is downloaded); mismatches are a usage error."""
    try:
        state = load_torch(path, follow_links=True)  # bounded by what the file stores
    except UsageError as e:
        raise UsageError(f"{flag} {e}") from None
    except FileNotFoundError:
        raise UsageError(f"{flag} {path}: no such file") from None
    except Exception as e:
        raise UsageError(f"{flag} {path}: not a readable state dict ({type(e).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()
        detail = " ".join(s.strip() for s in first[:3])[:300]
        raise UsageError(f"{flag} {path} does not match the architecture: {detail}") from None
