"""What `import incop` and `incop --help` load: torch and incop's own modules, not the heavy
optional libraries (matplotlib, onnx, wandb, tensorboard), which the work that needs them
imports (a figure, an export, a tracker)."""
import subprocess
import sys

HEAVY = ("matplotlib", "onnx", "onnxruntime", "wandb", "tensorboard", "torch.utils.tensorboard")


def _loaded_after(code: str) -> list:
    probe = (f"import sys\n{code}\n"
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    return out.split()


def test_import_incop_loads_no_heavy_library():
    assert _loaded_after("import incop") == []


def test_help_loads_no_heavy_library():
    code = ("from incop.cli import main\n"
            "import contextlib, io\n"
            "for argv in (['--help'], ['run', '--help'], ['frontier', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n"
            "            main(argv)\n"
            "        except SystemExit:\n"
            "            pass")
    assert _loaded_after(code) == []


def test_a_figure_still_draws():
    """Lazy, not gone: the first figure imports matplotlib."""
    assert "matplotlib" in _loaded_after(
        "from incop.report.figures import new_figure\nnew_figure(figsize=(2, 2))")
