#!/usr/bin/env bash
# incop on one NVIDIA GPU, as is on a fresh machine, in under 8 minutes (issue 28):
#   1. install (or use a Python whose torch already sees CUDA), and say what the GPU is;
#   2. the test suite's CUDA tests;
#   3. precision parity: LeNet-5 on digits in fp32, bf16 and fp16, the same seed, side by side;
#   4. the seed's comparison on MNIST-format files (lth, sap, ciap, giap; vgg16, a few rounds),
#      its tables from incop report.
# Files here are MNIST-format IDX files made from scikit-learn's digits (28x28, 1,797 images):
# the machine may have no network and no MNIST.
#   bash benchmarks/gpu_check.sh              on the GPU machine; tables under $OUT
#   bash benchmarks/gpu_check.sh --dry-run    the same steps on this CPU at toy sizes (lenet5 for
#                                             vgg16), without installing or the CUDA tests (what
#                                             a test runs)
# OUT (default output/gpu_check), PYTHON (default: .venv/bin/python after installing).
set -euo pipefail
OUT=${OUT:-output/gpu_check}
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "== $*" | tee -a "$LOG" >&2; }
START=$(date +%s)

if [[ $DRY == 1 ]]; then
  PY=${PYTHON:-python3}; DEVICE=cpu; PRECISIONS="fp32 bf16"; ARCH=lenet5  # vgg16 takes minutes here
  VGG=(--net_train_epochs 0.25 --net_warmup 1 --exper_imp_total_iter 2 --allow_untrained)
  say "dry run on the CPU: no install, no CUDA tests, fp16 left out (CUDA only)"
else
  DEVICE=cuda; PRECISIONS="fp32 bf16 fp16"; ARCH=vgg16
  VGG=(--net_train_epochs 2 --net_warmup 2 --exper_imp_total_iter 4)
  if [[ -n "${PYTHON:-}" ]] && "$PYTHON" -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
    PY=$PYTHON
    say "using $PY (its torch sees CUDA); installing incop into it"
    "$PY" -m pip install -q -e ".[test]" 2>&1 | tail -n 3 | tee -a "$LOG"
  else
    say "make install"
    make install 2>&1 | tail -n 3 | tee -a "$LOG"
    PY=.venv/bin/python
  fi
  "$PY" -c "import torch,sys; sys.exit(not torch.cuda.is_available())" || {
    echo "gpu_check: the installed torch sees no CUDA device; install a CUDA build of torch and set PYTHON" >&2; exit 2; }
  nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt" | head -n 15 >&2 || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee -a "$LOG"
  say "the CUDA tests"
  "$PY" -m pytest -q -rs tests/engine/test_precision.py 2>&1 | tail -n 15 | tee "$OUT/cuda_tests.txt" >&2
fi

say "MNIST-format files from scikit-learn's digits"
"$PY" - "$OUT/data/MNIST" <<'PYCODE'
import struct, sys
from pathlib import Path
import numpy as np
import torch
from sklearn.datasets import load_digits

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
d = load_digits()
x = torch.nn.functional.interpolate(torch.tensor(d.images, dtype=torch.float32)[:, None],
                                    size=(28, 28), mode="bilinear", align_corners=False)
x = (x[:, 0] / 16 * 255).clamp(0, 255).round().to(torch.uint8).numpy()
y = d.target.astype(np.uint8)
order = np.random.default_rng(0).permutation(len(y))
x, y = x[order], y[order]
def write(name, a):
    dims = a.shape
    head = struct.pack(">HBB", 0, 8, len(dims)) + b"".join(struct.pack(">I", n) for n in dims)
    (out / name).write_bytes(head + a.tobytes())
write("train-images-idx3-ubyte", x[:1500]); write("train-labels-idx1-ubyte", y[:1500])
write("t10k-images-idx3-ubyte", x[1500:]); write("t10k-labels-idx1-ubyte", y[1500:])
print(f"{len(y)} images in {out}")
PYCODE

say "precision parity: LeNet-5 on digits, seed 0"
for P in $PRECISIONS; do
  "$PY" -m incop run --net_arch lenet5 --net_dataset digits --prune_method sap --net_lr 0.05 \
    --net_momentum 0.9 --net_warmup 2 --net_train_epochs 1 --exper_imp_total_iter 3 \
    --precision "$P" --device "$DEVICE" --quiet --run_name "parity-$P" \
    --output_dir "$OUT/parity" > "$OUT/parity-$P.txt" 2>&1
done
"$PY" -m incop report "$OUT/parity" --output "$OUT/parity/report" | tee "$OUT/parity.txt" >&2

say "the seed's comparison: $ARCH on MNIST-format files, lth sap ciap giap"
"$PY" -m incop sweep --net_arch "$ARCH" --net_dataset MNIST --data_dir "$OUT/data" \
  --prune_method lth sap ciap giap --net_lr 0.01 --net_momentum 0.9 "${VGG[@]}" \
  --device "$DEVICE" --quiet --output_dir "$OUT/vgg16" 2>&1 | tail -n 12 | tee "$OUT/vgg16.txt" >&2

say "done in $(( $(date +%s) - START )) s; tables: $OUT/parity.txt, $OUT/vgg16.txt, $OUT/vgg16/report/report.md"
