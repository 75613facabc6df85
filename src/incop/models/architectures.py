"""Model registry. Every model adapts to the input's channels and size and to the class count.

Factories take ``(input_shape, num_classes)`` where ``input_shape`` is ``(C, H, W)``.
Residual shortcut projections are named ``shortcut`` so that flow monitors can leave them out.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import torch
from torch import nn

from ..base.errors import UsageError
from .pretrained import load_pretrained  # noqa: F401  (its home before pretrained.py)
from ..base.registry import Registry

Shape = Tuple[int, ...]
ModelFactory = Callable[[Shape, int], nn.Module]
MODELS: Registry[ModelFactory] = Registry("architecture")


def _flat_size(features: nn.Module, input_shape: Shape) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


def _pool_if_room(size: int) -> Tuple[List[nn.Module], int]:
    """A 2x2 max-pool while the feature map is at least 2 pixels wide; small inputs skip it."""
    return ([nn.MaxPool2d(2)], size // 2) if size >= 2 else ([], size)


class LeNet300(nn.Module):
    """LeNet-300-100: a fully connected 300-100 network (LeCun et al.; Frankle and Carbin)."""

    def __init__(self, input_shape: Shape, num_classes: int) -> None:
        super().__init__()
        n_in = 1
        for s in input_shape:
            n_in *= s
        self.fc1, self.fc2 = nn.Linear(n_in, 300), nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) as it is trained today: two 5x5 convolutions of 6 and 16
    channels, each followed by ReLU and a 2x2 max-pool, then 120-84-classes. The first is padded
    to keep the input's size (28x28 images, as the 32x32 of the original); the second is
    padded too when the map is smaller than 5 pixels (8x8 digits)."""

    def __init__(self, input_shape: Shape, num_classes: int) -> None:
        super().__init__()
        size = input_shape[-1]
        pool1, size = _pool_if_room(size)
        pad2 = 0 if size >= 5 else 2
        pool2, _ = _pool_if_room(size + 2 * pad2 - 4)
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 6, 5, padding=2), nn.ReLU(inplace=True), *pool1,
            nn.Conv2d(6, 16, 5, padding=pad2), nn.ReLU(inplace=True), *pool2)
        n = _flat_size(self.features, input_shape)
        self.fc1, self.fc2 = nn.Linear(n, 120), nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class ConvNet(nn.Module):
    """Conv-2/4/6 of Frankle and Carbin: pairs of 3x3 convs, each pair followed by a max-pool,
    then fully connected 256-256-classes."""

    def __init__(self, input_shape: Shape, num_classes: int, widths: Sequence[int]) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        c, size = input_shape[0], input_shape[-1]
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True)]
            c = w
            if i % 2 == 1:
                pool, size = _pool_if_room(size)
                layers += pool
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(_flat_size(self.features, input_shape), 256), nn.ReLU(inplace=True),
            nn.Linear(256, 256), nn.ReLU(inplace=True), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


_VGG_PLANS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """CIFAR-style VGG: 3x3 convs, max-pools while the map is at least 2 wide, global average
    pooling, one linear classifier."""

    def __init__(self, input_shape: Shape, num_classes: int, depth: int, batch_norm: bool) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        c, size = input_shape[0], input_shape[-1]
        for v in _VGG_PLANS[depth]:
            if v == "M":
                pool, size = _pool_if_room(size)
                layers += pool
                continue
            layers.append(nn.Conv2d(c, int(v), 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU(inplace=True))
            c = int(v)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    """ResNet basic block; the 1x1 projection on the shortcut is named ``shortcut``."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem, no initial max-pool, stages of basic blocks, global pooling."""

    def __init__(self, input_shape: Shape, num_classes: int, widths: Sequence[int],
                 blocks_per_stage: int) -> None:
        super().__init__()
        c = widths[0]
        self.conv1 = nn.Conv2d(input_shape[0], c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        blocks: List[nn.Module] = []
        for i, w in enumerate(widths):
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class AlexNet(nn.Module):
    """AlexNet for small images (the CIFAR variant used in pruning papers): five 3x3 convs,
    three max-pools while there is room, then 1024-1024-classes fully connected."""

    def __init__(self, input_shape: Shape, num_classes: int) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        c, size = input_shape[0], input_shape[-1]
        for w, pool_after in ((64, True), (192, True), (384, False), (256, False), (256, True)):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True)]
            c = w
            if pool_after:
                pool, size = _pool_if_room(size)
                layers += pool
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(c * 4, 1024), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(1024, 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def _torchvision_model(name: str) -> ModelFactory:
    def build(input_shape: Shape, num_classes: int) -> nn.Module:
        try:
            import torchvision.models as tvm
        except Exception:
            raise UsageError(f"architecture '{name}' needs torchvision, which is not importable; "
                             f"install it (pip install 'incop[torchvision]') or pick another "
                             f"--net_arch") from None
        model = getattr(tvm, name)(weights=None, num_classes=num_classes,
                                   **({"aux_logits": False, "init_weights": True}
                                      if name == "googlenet" else {}))
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        if first.in_channels != input_shape[0]:
            raise UsageError(f"torchvision's {name} takes 3-channel images; use a 3-channel "
                             f"dataset such as CIFAR10")
        return model

    return build


MODELS.add("lenet300", LeNet300, "lenet", "lenet_300_100", "fc", "mlp")
MODELS.add("lenet5", LeNet5, "lenet_5")
MODELS.add("conv2", lambda s, k: ConvNet(s, k, [64, 64]))
MODELS.add("conv4", lambda s, k: ConvNet(s, k, [64, 64, 128, 128]))
MODELS.add("conv6", lambda s, k: ConvNet(s, k, [64, 64, 128, 128, 256, 256]))
MODELS.add("vgg11", lambda s, k: VGG(s, k, 11, False))
MODELS.add("vgg11_bn", lambda s, k: VGG(s, k, 11, True))
MODELS.add("vgg16", lambda s, k: VGG(s, k, 16, False))
MODELS.add("vgg16_bn", lambda s, k: VGG(s, k, 16, True))
MODELS.add("resnet18", lambda s, k: ResNet(s, k, [64, 128, 256, 512], 2))
MODELS.add("resnet20", lambda s, k: ResNet(s, k, [16, 32, 64], 3))
MODELS.add("alexnet", AlexNet)
MODELS.add("densenet", _torchvision_model("densenet121"), "densenet121")
MODELS.add("googlenet", _torchvision_model("googlenet"))


INITS = ("kaiming", "pytorch")


def kaiming_init(model: nn.Module) -> nn.Module:
    """OpenLTH's initialisation: Kaiming normal (fan-in, ReLU gain) for every Conv and Linear
    weight, zero biases, batch-norm scale 1 and shift 0. Unlike PyTorch's default (variance
    1/(3 fan-in), a sixth of what ReLU needs), it keeps the signal's scale through depth: with
    it vgg16 without batch norm learns at lr 0.01 without momentum (docs/training.md, 'When the network
    does not learn')."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def build_model(name: str, input_shape: Shape, num_classes: int, init: str = "kaiming") -> nn.Module:
    """Build a registered architecture for inputs of ``input_shape`` (C, H, W). ``init``:
    kaiming (the default), or pytorch (each layer's own default, as incop 0.1 did).
    torchvision's architectures keep their own initialisation."""
    if init not in INITS:
        raise UsageError(f"--net_init {init}: use one of {', '.join(INITS)}")
    model = MODELS.get(name)(tuple(input_shape), num_classes)
    is_own = type(model).__module__ == __name__
    return kaiming_init(model) if init == "kaiming" and is_own else model
