"""Reading run directories back, and the side-by-side comparison written by ``incop report``."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence

from .errors import UsageError
from .results import atomic_write_text, format_table, mean_std, to_csv


@dataclass
class RunData:
    """What a finished (or partly finished) run directory holds."""

    path: Path
    config: Dict[str, Any]
    rounds: List[Dict[str, Any]]
    epochs: List[Dict[str, Any]] = field(default_factory=list)
    trials: List[Dict[str, Any]] = field(default_factory=list)
    similarity: List[Dict[str, Any]] = field(default_factory=list)
    label: str = ""

    @property
    def method(self) -> str:
        return self.config["prune"]["method"]

    @property
    def epsilon(self):
        from .methods import resolve
        from .config import PruneConfig

        return resolve(PruneConfig(**self.config["prune"]))[2]

    def by_trial(self) -> Dict[int, List[Dict[str, Any]]]:
        out: Dict[int, List[Dict[str, Any]]] = {}
        for r in self.rounds:
            out.setdefault(r["trial"], []).append(r)
        return out


def _number(v: str) -> Any:
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _read_csv(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    with open(path) as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def load_run(path: Path) -> RunData:
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
        rounds = json.loads((path / "rounds.json").read_text())
    except FileNotFoundError as e:
        raise UsageError(f"{path} is not a run directory with results (no {Path(e.filename).name}); "
                         f"pass directories made by 'incop run'") from None
    except json.JSONDecodeError:
        raise UsageError(f"{path}: results file is not valid JSON; re-run the command to resume "
                         f"it") from None
    trials_path = path / "trials.json"
    trials = json.loads(trials_path.read_text()) if trials_path.exists() else []
    run = RunData(path, config, rounds, _read_csv(path / "epochs.csv"), trials,
                  _read_csv(path / "similarity.csv"))
    run.label = default_label(run)
    return run


def default_label(run: RunData) -> str:
    p = run.config["prune"]
    rule = p.get("rule") or ("layerwise" if p["method"] == "lth" else "sap")
    label = p["method"]
    if rule == "sap":
        label += f" ({p['p']:g}, {p['q']:g})"
    if p.get("epsilon") is not None:
        label += f" eps={p['epsilon']:g}"
    return label


def find_runs(paths: Iterable[str]) -> List[RunData]:
    """Run directories named directly, or found below the given folders (a sweep's output)."""
    found: List[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError(f"{p}: no such directory")
        if (p / "config.json").exists():
            found.append(p)
        else:
            found += sorted(c.parent for c in p.rglob("config.json"))
    if not found:
        raise UsageError(f"no run directories (with config.json) in {', '.join(map(str, paths))}")
    runs = [load_run(p) for p in dict.fromkeys(found)]
    labels = [r.label for r in runs]
    for r in runs:  # disambiguate runs that differ in something the label does not show
        if labels.count(r.label) > 1:
            r.label += f" [{r.config['model']['arch']}/{r.path.name}]"
    return runs


def run_summary(run: RunData) -> Dict[str, Any]:
    """One row: final sparsity and accuracy, and the training cost, mean and std over trials."""
    trials = [rs for rs in run.by_trial().values() if rs]
    finals = [rs[-1] for rs in trials]
    cost = lambda rs, keys: sum(r[k] for r in rs for k in keys)
    row: Dict[str, Any] = {"run": run.label, "method": run.method,
                           "arch": run.config["model"]["arch"],
                           "dataset": run.config["data"]["dataset"],
                           "p": run.config["prune"]["p"], "q": run.config["prune"]["q"],
                           "trials": len(trials), "rounds": max((len(rs) for rs in trials), default=0)}
    for name, values in (
            ("remaining_pct", [f["remaining_pct"] for f in finals]),
            ("val_acc", [f["val_acc"] for f in finals]),
            ("test_acc", [f["test_acc"] for f in finals]),
            ("total_epochs", [cost(rs, ["epochs"]) for rs in trials]),
            ("wall_time_s", [cost(rs, ["time_train", "time_flow", "time_eval", "time_prune"])
                             for rs in trials]),
            ("train_time_s", [cost(rs, ["time_train"]) for rs in trials]),
            ("flow_time_s", [cost(rs, ["time_flow"]) for rs in trials])):
        row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
    row["path"] = str(run.path)
    return row


def _pm(row: Dict[str, Any], key: str, digits: int = 2) -> str:
    m, s = row[f"{key}_mean"], row[f"{key}_std"]
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def report_markdown(rows: Sequence[Dict[str, Any]]) -> str:
    headers = ["run", "arch", "dataset", "p", "q", "trials", "remaining %", "val acc %",
               "test acc %", "total epochs", "wall time s", "flow time s"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [r["run"], r["arch"], r["dataset"], f"{r['p']:g}", f"{r['q']:g}", str(r["trials"]),
                 _pm(r, "remaining_pct"), _pm(r, "val_acc"), _pm(r, "test_acc"),
                 _pm(r, "total_epochs", 1), _pm(r, "wall_time_s", 1), _pm(r, "flow_time_s", 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report_text(rows: Sequence[Dict[str, Any]]) -> str:
    return format_table(
        ["run", "remaining %", "val acc %", "test acc %", "epochs", "wall s", "flow s"],
        [[r["run"], _pm(r, "remaining_pct"), _pm(r, "val_acc"), _pm(r, "test_acc"),
          _pm(r, "total_epochs", 1), _pm(r, "wall_time_s", 1), _pm(r, "flow_time_s", 1)]
         for r in rows])


def write_report(runs: Sequence[RunData], out_dir: Path) -> List[Dict[str, Any]]:
    """Writes report.md, report.csv and the overlaid figures into ``out_dir``."""
    from .plots import save_run_figures

    out_dir = Path(out_dir)
    rows = [run_summary(r) for r in runs]
    atomic_write_text(out_dir / "report.md", "# incop report\n\n" + report_markdown(rows))
    atomic_write_text(out_dir / "report.csv", to_csv(rows))
    save_run_figures(runs, out_dir)
    return rows

