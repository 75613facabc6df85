"""benchmarks/seed_recipe.py's quick mode runs (the check that a dense network learned is
tested in tests/engine/test_learned_check.py)."""


def test_seed_recipe_benchmark_quick_mode(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "seed_recipe.py"
    out = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[1]: line.split() for line in out.stdout.splitlines()
            if line.startswith("conv2 ")}
    assert set(rows) == {"pytorch", "kaiming"}
    assert rows["kaiming"][-1] == "learns" and float(rows["kaiming"][4]) > 50
