"""benchmarks/compare_methods.py in its smoke mode: every method, the ratio table, the figures
(incop report is tested in tests/report/)."""
import json
from pathlib import Path

import pytest


def test_compare_methods_benchmark_script_runs(tmp_path):
    """The issue-6 benchmark in its smoke mode: every method, the ratio table, the figures."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "compare_methods.py"), "--smoke",
                          "--seeds", "0", "--archs", "lenet300", "--sparsity_slack", "-1",
                          "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "compare_summary.json").read_text())
    incop = ["ciap (1, 2)", "giap (1, 2)", "ciap (0.5, 1)", "giap (0.5, 1)"]
    at_sap = [m + " at SAP's sparsity" for m in incop]
    assert sorted(r["method"] for r in summary["rows"]) == sorted(
        ["lth", "sap (1, 2)", "sap (0.5, 1)"] + incop + at_sap)
    assert sorted(r["method"] for r in summary["ratios"]) == sorted(incop + at_sap)
    rows = {r["method"]: r["per_seed"][0] for r in summary["rows"]}
    for m in at_sap:  # rerun with SAP's final sparsity as the target: it lands on it
        sap_rem = rows["sap " + m.split(" ")[1] + " " + m.split(" ")[2]]["remaining"]
        assert rows[m]["remaining"] == pytest.approx(sap_rem, abs=0.01)
    sap = next(r for r in summary["rows"] if r["method"] == "sap (1, 2)")["per_seed"][0]
    assert sap["epochs"] == 2 * 2  # 2 rounds of the smoke size's 2 epochs, fixed
    assert (tmp_path / "figures" / "lenet300_rounds.png").exists()
