"""benchmarks/recipes.sh in its quick mode and benchmarks/gpu_check.sh dry on the CPU run and
write their tables (the training settings they use are tested in tests/engine/)."""


def test_the_recipes_benchmark_runs_in_its_quick_mode(tmp_path):
    """benchmarks/recipes.sh QUICK=1: the six recipes at one budget, ablations, the report."""
    import csv
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "recipes"
    subprocess.run(["bash", str(root / "benchmarks" / "recipes.sh"), str(out)], check=True,
                   cwd=root, env={**os.environ, "QUICK": "1", "PYTHON": sys.executable},
                   capture_output=True)
    with open(out / "report" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {float(r["remaining_pct_mean"]) for r in rows} == {10.0}
    assert sorted(p.parent.name for p in out.rglob("ablations.csv")) == ["gmp", "weight_rewinding"]


def test_the_gpu_check_runs_dry_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: its steps on the CPU at toy sizes, tables written."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "gpu_check"
    subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), "--dry-run"], check=True,
                   cwd=root, env={**os.environ, "OUT": str(out), "PYTHON": sys.executable},
                   capture_output=True)
    parity = (out / "parity.txt").read_text()
    assert "parity-fp32" in parity and "parity-bf16" in parity
    comparison = (out / "vgg16.txt").read_text()
    for method in ("lth", "sap (1, 2)", "ciap (1, 2)", "giap (1, 2)"):
        assert method in comparison
    assert (out / "data" / "MNIST" / "t10k-labels-idx1-ubyte").stat().st_size == 8 + 297
