"""The examples and the docs' code run as written: examples/*.py, the README's Python task, the
API page's example, and docs/export.md's commands and snippets, checked against the run's own
records so the pages cannot rot."""
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import ROOT

import incop
from incop.cli import main
from incop.engine.training import evaluate
from incop.runs.layout import round_masks


@pytest.mark.parametrize("script,args,expect", [
    ("custom_cnn_ciap.py", ["--rounds", "2", "--epochs", "2", "--warmup", "2"], "final:"),
    ("state_dict_export.py", ["--rounds", "2", "--epochs", "1"], "plain export reloaded"),
    ("callback_loop.py", ["--rounds", "2", "--max_epochs", "2"], "round 2:"),
])
def test_examples_run(script, args, expect, tmp_path):
    extra = ["--out", str(tmp_path / "exp")] if script == "state_dict_export.py" else []
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args, *extra],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout
    if script == "state_dict_export.py":
        assert {p.name for p in (tmp_path / "exp").iterdir()} >= {"pruned_plain.pt", "pruned_torch_prune.pt", "masks.pt"}


def _python_block(text: str) -> str:
    start = text.index("```python") + len("```python")
    return text[start:text.index("```\n", start)]


def test_the_readme_python_task_works_as_written(tmp_path, monkeypatch):
    code = _python_block((ROOT / "README.md").read_text())
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert 0 < namespace["result"].remaining_fraction < 1
    assert (tmp_path / "masks.pt").exists()


def test_the_api_page_example_works_as_written(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "api.md").read_text()
    section = text[text.index("# Python API"):]
    code = section[section.index("```python") + len("```python"):section.index("```\n", section.index("```python") + 9)]
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)
    result = namespace["result"]
    assert result.rounds[-1]["remaining"] == incop.pruning.rules.target_count(
        result.masks.total(), 10) and result.target_reached
    assert len(result.ablations) == 6 and len(result.tickets) == 1
    fresh = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    fresh.load_state_dict(torch.load(tmp_path / "pruned.pt"))
    assert int((fresh[1].weight == 0).sum()) == int((result.masks["1.weight"] == 0).sum())


PAGE = ROOT / "docs" / "export.md"


def _blocks(language: str):
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.S)


def _commands():
    """The page's incop commands (continuation lines joined), as argument lists."""
    (block,) = _blocks("sh")
    return [shlex.split(line)[1:] for line in block.replace("\\\n", " ").splitlines()
            if line.startswith("incop ")]


def test_the_page_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    has_onnx = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
    commands = _commands()
    assert [c[0] for c in commands] == ["run"] + ["export"] * 4
    for argv in commands:
        if argv[0] == "run":  # the brief run the page shows, without progress bars
            argv = argv + ["--quiet"]
        if "onnx" in argv and not has_onnx:
            continue
        assert main(argv) == 0, capsys.readouterr().err

    ns: dict = {}
    skipped = []
    for code in _blocks("python"):
        if "onnxruntime" in code and not has_onnx:
            skipped.append("the ONNX snippet: onnx or onnxruntime is not installed")
            continue
        exec(compile(code, str(PAGE), "exec"), ns)

    run = Path("output/sap/lenet300/digits/0a902c347e")
    assert ns["run"] == run and (run / "config.json").is_file(), \
        "the page's run directory is not where its commands wrote the run"
    rounds = json.loads((run / "rounds.json").read_text())
    last = rounds[-1]
    assert (last["trial"], last["round"]) == (0, 1)
    # the dense file, evaluated as the page says, gives the test accuracy the run recorded
    assert ns["accuracy"] == pytest.approx(last["test_acc"], abs=1e-9)
    # the page's split is trial 0's, normalised as the run did: the validation loss of the
    # round's last check (measured on the same weights) comes out again
    splits = ns["splits"]
    check = [e for e in json.loads((run / "epochs.json").read_text()) if e["round"] == 1][-1]
    val_acc, val_loss = evaluate(ns["model"], (splits.val_x, splits.val_y))
    assert (val_acc, val_loss) == pytest.approx((check["val_acc"], check["val_loss"]), abs=1e-6)
    dense = ns["model"].state_dict()
    for other in ("same", "sparse_model"):  # the registry's model and the sparse file: the same
        state = ns[other].state_dict()
        assert state.keys() == dense.keys()
        assert all(torch.equal(state[k], dense[k]) for k in dense), other
    saved = round_masks(run, 0, 1)
    assert ns["masks"].keys() == saved.keys()
    assert all(torch.equal(ns["masks"][n].bool(), saved[n].bool()) for n in saved)
    assert all(torch.all(dense[n][~saved[n].bool()] == 0) for n in saved)  # pruned: zeros

    x = ns["splits"].test_x
    with torch.no_grad():
        want = ns["model"](x)
        pruned = ns["pruned"]
        assert hasattr(pruned.fc1, "weight_orig") and hasattr(pruned.fc1, "weight_mask")
        assert torch.allclose(pruned(x), want, atol=1e-6)
        assert torch.equal(ns["fast"](x).argmax(1), want.argmax(1))
    import incop
    plain_masks = incop.masks_from_torch_prune(pruned)
    assert all(torch.equal(plain_masks[n].bool(), saved[n].bool()) for n in saved)
    if "logits" in ns:
        assert torch.allclose(torch.from_numpy(ns["logits"]), want, atol=1e-4)
    if skipped:
        pytest.skip("; ".join(skipped))
