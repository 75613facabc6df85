"""The quick mode of benchmarks/precision.py runs (the precision tests themselves are in
tests/engine/test_precision.py)."""
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def test_precision_benchmark_quick_mode_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "precision.py"), "--quick",
                          "--models", "lenet300", "--archs", "lenet300",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bf16 + channels-last" in out.stdout and "lenet300 sap" in out.stdout
    assert (tmp_path / "precision.json").exists()
