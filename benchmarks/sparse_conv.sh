#!/usr/bin/env bash
# Issue 29's measurement: incop's own searches prune lenet5, conv4 and vgg16 to 5% remaining,
# then `incop speed` times the final round dense against sparse (direct sparse convolutions,
# CSR Linear layers, the ReLU and pooling after them fused in where that is faster), fp32, one
# and two threads (THREADS="1" for one), batch 1 and 64, side by side in one process. Two
# searches a network: SAP's global rule (which keeps the first convolutions dense-ish) and
# LTH's layer-wise rule (20% of every layer's survivors a round: every layer ends at 5%).
# Run it alone: another busy process on these 2 cores slows the timings about 10x.
#   bash benchmarks/sparse_conv.sh [OUT]            the measurement
#   QUICK=1 bash benchmarks/sparse_conv.sh [OUT]    lenet5 on digits, a few rounds (seconds)
# lenet5 searches Fashion-MNIST; conv4 and vgg16 search MNIST-format files made from
# scikit-learn's digits (as gpu_check.sh does; a conv4 epoch of Fashion-MNIST takes about two
# minutes here): a network's timings depend on its masks and shapes, not on the data's size.
set -euo pipefail
OUT=${1:-output/sparse_conv}
PY=${PYTHON:-python}
COMMON=(--net_warmup 1 --net_train_epochs 1 --exper_imp_total_iter 40
        --prune_target_remaining 5 --net_lr 0.01 --net_momentum 0.9 --quiet --output_dir "$OUT")
read -r -a THREADS <<< "${THREADS:-1 2}"  # issue 37: one and two threads, side by side
SPEED=(--rounds last --batches 1 64 --threads "${THREADS[@]}" --quiet)
search() { echo "== search: $*" >&2; "$PY" -m incop run "${COMMON[@]}" "$@"; }
both() {  # both rules for one network: the run names are the network's and <network>-layerwise
  search --prune_method sap "$@"
  local name=${*: -1}
  search --prune_method lth "${@:1:$#-1}" "$name-layerwise"
}
if [[ -n "${QUICK:-}" ]]; then
  search --prune_method sap --net_arch lenet5 --net_dataset digits --exper_imp_total_iter 3 \
    --run_name lenet5
  "$PY" -m incop speed "$OUT/sap/lenet5/digits/lenet5" --rounds last --batches 4 --threads 1 \
    --repeats 2 --quiet
  exit 0
fi
OUT="$OUT" "$PY" - <<'PYCODE'
import os, struct
from pathlib import Path
import numpy as np, torch
from sklearn.datasets import load_digits
out = Path(os.environ["OUT"]) / "data" / "MNIST"; out.mkdir(parents=True, exist_ok=True)
d = load_digits()
x = torch.nn.functional.interpolate(torch.tensor(d.images, dtype=torch.float32)[:, None],
                                    size=(28, 28), mode="bilinear", align_corners=False)
x = (x[:, 0] / 16 * 255).clamp(0, 255).round().to(torch.uint8).numpy(); y = d.target.astype(np.uint8)
def write(name, a):
    head = struct.pack(">HBB", 0, 8, a.ndim) + b"".join(struct.pack(">I", n) for n in a.shape)
    (out / name).write_bytes(head + a.tobytes())
write("train-images-idx3-ubyte", x[:1500]); write("train-labels-idx1-ubyte", y[:1500])
write("t10k-images-idx3-ubyte", x[1500:]); write("t10k-labels-idx1-ubyte", y[1500:])
PYCODE
both --net_arch lenet5 --net_dataset FashionMNIST --run_name lenet5
both --net_arch conv4 --net_dataset MNIST --data_dir "$OUT/data" --run_name conv4
both --net_arch vgg16 --net_dataset MNIST --data_dir "$OUT/data" --run_name vgg16
for net in sap/lenet5/FashionMNIST/lenet5 sap/conv4/MNIST/conv4 sap/vgg16/MNIST/vgg16 \
           lth/lenet5/FashionMNIST/lenet5-layerwise lth/conv4/MNIST/conv4-layerwise \
           lth/vgg16/MNIST/vgg16-layerwise; do
  echo "== speed: $net" >&2
  "$PY" -m incop speed "$OUT/$net" "${SPEED[@]}"
done
