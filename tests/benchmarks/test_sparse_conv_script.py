"""benchmarks/sparse_conv.sh runs in its quick mode (the direct sparse convolution itself is tested
in tests/deploy/test_sparse_convolution.py)."""
import pytest

from incop.deploy.csr_tiled import unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"no kernel: {unavailable()}")


def test_the_sparse_conv_benchmark_runs_in_its_quick_mode(tmp_path):
    import csv
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    subprocess.run(["bash", str(root / "benchmarks" / "sparse_conv.sh"), str(tmp_path)],
                   check=True, cwd=root, capture_output=True,
                   env={**os.environ, "QUICK": "1", "PYTHON": sys.executable})
    with open(tmp_path / "sap" / "lenet5" / "digits" / "lenet5" / "speed_layers.csv") as f:
        kinds = {r["layer"]: r for r in csv.DictReader(f)}
    assert kinds["features.0"]["direct_us"] and kinds["fc1"]["csr_tiled_us"]
