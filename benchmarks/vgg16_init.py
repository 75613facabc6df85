"""How vgg16 (no BN) learns under the seed's settings (lr 0.01, momentum 0, batch 64) by initialisation:
    python benchmarks/vgg16_init.py [TRAIN_SIZE] [STEPS]   (results: benchmarks/results/vgg16_init.txt)
"""
import sys, time
import torch
from torch import nn
from incop.data.datasets import load_fashion_mnist
from incop.models.architectures import build_model
torch.set_num_threads(2)
raw = load_fashion_mnist()
n = int(sys.argv[1]) if len(sys.argv) > 1 else 12000
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
from incop.data.datasets import split_train_val
sp = split_train_val(raw, 0.1, 0)
x, y = sp.train_x[:n], sp.train_y[:n]
xv, yv = sp.val_x[:2000], sp.val_y[:2000]
def tv_init(m):
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu"); nn.init.zeros_(mod.bias) if mod.bias is not None else None
        elif isinstance(mod, nn.Linear):
            nn.init.normal_(mod.weight, 0, 0.01); nn.init.zeros_(mod.bias)
def fanin_init(m):
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu"); nn.init.zeros_(mod.bias) if mod.bias is not None else None
configs = {"default": (None, 0), "torchvision": (tv_init, 0), "fan_in": (fanin_init, 0),
           "torchvision+warmup200": (tv_init, 200)}
for name, (init, warm) in configs.items():
    torch.manual_seed(0)
    m = build_model("vgg16", (1, 28, 28), 10, init="pytorch")  # then each config's own
    if init: init(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.0)
    g = torch.Generator().manual_seed(0); t0 = time.time(); losses = []
    it = 0
    while it < steps:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - 63, 64):
            if it >= steps: break
            idx = perm[i:i+64]
            lr = 0.01 * min(1.0, (it + 1) / warm) if warm else 0.01
            for gr in opt.param_groups: gr["lr"] = lr
            loss = nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item()); it += 1
            if it % 50 == 0:
                print(f"{name:24s} it {it:4d} loss(last50) {sum(losses[-50:])/50:.4f}  {time.time()-t0:.0f}s", flush=True)
    with torch.no_grad():
        acc = (m(xv).argmax(1) == yv).float().mean().item() * 100
    print(f"{name:24s} DONE {steps} it: val acc {acc:.1f}%  {time.time()-t0:.0f}s", flush=True)
