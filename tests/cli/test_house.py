"""The house can be rearranged without breaking users: run ids, files written before the modules
moved into packages, and the names users import stay as they were."""
import shutil

import pytest
import torch

from conftest import FIXTURES, small_run

import incop
from incop.cli import build_parser
from incop.config.flags import config_from_args


DATA = FIXTURES


@pytest.mark.parametrize("argv,run_id", [
    (["--prune_method", "ciap"], "6ebb13b4d9"),
    ([], "9274f62176"),  # no method: the recommended recipe allr-2, as before it had a name
    (["--net_arch", "vgg16", "--net_dataset", "CIFAR10", "--prune_method", "lth"], "3876bad5cd"),
    (["--net_arch", "lenet300", "--net_dataset", "FashionMNIST", "--prune_method", "ciap",
      "--prune_p", "0.5", "--prune_q", "1", "--exper_imp_total_iter", "20"], "a47249e334"),
    (["--prune_method", "giap", "--rewind_to", "200it", "--check_every", "0.25ep",
      "--net_lr_schedule", "cosine"], "992b2c085d")])
def test_run_ids_are_pinned(argv, run_id):
    """Computed before the move: a run directory's name must never change under its users."""
    assert config_from_args(build_parser().parse_args(["run", *argv])).run_id() == run_id


def test_a_fast_model_pickled_before_the_move_loads():
    saved = torch.load(DATA / "fast_model_before_packages.pt", weights_only=False)
    with torch.no_grad():
        got = saved["model"](saved["input"])
    assert torch.allclose(got, saved["output"], atol=1e-5)


def test_a_run_interrupted_before_the_move_resumes(cli, tmp_path):
    run = tmp_path / "sap" / "lenet300" / "digits" / "r"
    shutil.copytree(DATA / "run_before_packages", run)
    code, out, err = cli(*small_run(run_name="r"), "--output_dir", str(tmp_path))
    assert code == 0, err
    assert "resuming trial 0 after round 0" in out
    import json
    rounds = json.loads((run / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[0]["val_acc"] == pytest.approx(94.444, abs=0.01)  # round 0 kept, not redone


def test_every_public_name_and_the_documented_paths_import():
    for name in incop.__all__:
        assert getattr(incop, name) is not None, name
    from incop.data import load_splits  # noqa: F401  (README)
    from incop import Masks  # noqa: F401


def test_every_forward_of_an_old_path_leads_somewhere():
    """The module paths from before 0.2 (incop._moved) name modules that exist, and old imports work."""
    import importlib
    import warnings

    from incop import _moved

    for old, targets in {**_moved.MODULES, **_moved.PACKAGES}.items():
        for target in targets:
            importlib.import_module(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from incop.records import RunRecords, criterion_report  # noqa: F401
        from incop.results import RunDirectory, atomic_write, format_table  # noqa: F401
        from incop.imp import TICKET_ROUND, IMPExperiment  # noqa: F401
        from incop.config import RunConfig, comparable, parse_point  # noqa: F401
        from incop.methods import METHODS, RULES, resolve  # noqa: F401
        from incop.speed import SparseLinear, fastest_sparse_model  # noqa: F401
    with pytest.warns(DeprecationWarning, match="incop.deploy.sparse_inference"):
        from incop.speed import measure  # noqa: F401
