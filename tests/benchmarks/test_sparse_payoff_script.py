"""benchmarks/sparse_payoff.py's quick mode of file sizes runs and keeps the issue's bound
(incop export and incop speed are tested in tests/deploy/test_export_and_speed.py)."""
import sys


def test_sparse_payoff_sizes_quick_mode():
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "sparse_payoff.py"
    out = subprocess.run([sys.executable, str(script), "sizes", "--quick"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = next(line.split() for line in out.stdout.splitlines() if line.startswith("lenet300            5"))
    dense_mb, sparse_mb = float(row[2]), float(row[3])
    assert sparse_mb * 8 <= dense_mb  # the bound at 5% remaining
