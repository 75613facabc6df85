"""Stopping criteria inside the IMP loop (incop.engine.imp): ciap stops earlier than a fixed
budget and records why, a round never exceeds its maximum, the reference is measured once,
giap records gradient distances (and equals sap when it never stops), recovery uses validation
accuracy, similarity is recorded per round and layer."""
import pytest

from conftest import FAST

from incop.config.schema import RunConfig
from incop.engine.imp import IMPExperiment
from incop.runs.reading import find_runs
from incop.stopping.criteria import AccuracyRecovery, InformationFlowCriterion
from incop.stopping.flows import InformationFlow


def _cfg(method, **prune):
    cfg = RunConfig()
    cfg.prune.method = method
    cfg.train.epochs, cfg.train.warmup, cfg.experiment.imp_total_iter = 6, 8, 3
    for k, v in prune.items():
        setattr(cfg.prune, k, v)
    return cfg.validate()


def _run(cfg):
    exp = IMPExperiment(cfg, progress=False, echo=lambda s: None)
    exp.run()
    return exp


def test_ciap_stops_earlier_than_fixed_and_records_why():
    ciap, sap = _run(_cfg("ciap")), _run(_cfg("sap"))
    assert sum(r["epochs"] for r in ciap.rounds) < sum(r["epochs"] for r in sap.rounds) == 18
    assert {r["stop_reason"] for r in ciap.rounds} == {"information_flow"}
    assert [r["remaining"] for r in ciap.rounds][0] == [r["remaining"] for r in sap.rounds][0]
    for r in ciap.rounds:  # the history: a distance before the first epoch and after each epoch
        assert r["start_distance"] is not None
        dists = [e["distance"] for e in ciap.epochs if e["round"] == r["round"]]
        assert len(dists) == r["epochs"] and dists[-1] < 0.11 and all(d >= 0.11 for d in dists[:-1])


@pytest.mark.parametrize("method", ["ciap", "giap"])
def test_round_never_exceeds_max_epochs(method):
    exp = _run(_cfg(method, epsilon=0.0))  # a distance is never below 0: never stops early
    assert [r["epochs"] for r in exp.rounds] == [6, 6, 6]
    assert {r["stop_reason"] for r in exp.rounds} == {"max_epochs"}


def test_reference_is_measured_once(monkeypatch):
    calls = []
    real = InformationFlow.measure
    monkeypatch.setattr(InformationFlow, "measure", lambda self, m: calls.append(1) or real(self, m))
    made = []
    real_init = InformationFlowCriterion.__init__

    def init(self, monitor, reference, epsilon=0.11):
        made.append(reference)
        real_init(self, monitor, reference, epsilon)

    monkeypatch.setattr(InformationFlowCriterion, "__init__", init)
    exp = _run(_cfg("ciap"))
    assert len(made) == 1
    # one reference + one measurement before each round + one after every epoch
    assert len(calls) == 1 + sum(1 + r["epochs"] for r in exp.rounds)


def test_giap_records_gradient_distance():
    exp = _run(_cfg("giap", epsilon=0.5))
    assert all(e["distance"] is not None and e["distance"] >= 0 for e in exp.epochs)
    assert all(r["epochs"] <= 6 for r in exp.rounds)


def test_stop_on_recovery_uses_validation_accuracy():
    cfg = _cfg("sap", stop_on_recovery=True)
    exp = _run(cfg)
    warm = exp.trials[0]["warmup_val_acc"]
    for r in exp.rounds:
        vals = [e["val_acc"] for e in exp.epochs if e["round"] == r["round"]]
        if r["stop_reason"] == "recovered":
            assert vals[-1] >= warm and all(v < warm for v in vals[:-1])
        else:
            assert r["epochs"] == 6 and all(v < warm for v in vals)
    assert AccuracyRecovery(90.0).check(None, None, 89.9).stop is False


def test_similarity_recorded_per_round_and_layer():
    exp = _run(_cfg("sap"))
    assert {(s["round"], s["layer"]) for s in exp.similarity} == {
        (k, n) for k in range(3) for n in ("fc1", "fc2", "fc3")}
    assert all(-1 <= s["cosine"] <= 1 + 1e-9 for s in exp.similarity)


COMMON = [*FAST, "--exper_num_trial", "2"]


def test_giap_that_never_stops_equals_sap(sap_and_ciap, cli, tmp_path):
    # Same seed, same rule, and a criterion that never fires: identical rounds, bit for bit.
    code, _, err = cli("run", "--prune_method", "giap", "--prune_epsilon", "0", *COMMON,
                       "--output_dir", str(tmp_path))
    assert code == 0, err
    giap = find_runs([str(tmp_path)])[0]
    sap = next(r for r in find_runs([str(sap_and_ciap)]) if r.method == "sap")
    keys = ("remaining", "epochs", "train_loss", "val_acc", "test_acc")
    assert [tuple(r[k] for k in keys) for r in giap.rounds] == [tuple(r[k] for k in keys) for r in sap.rounds]
