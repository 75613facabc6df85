"""A sweep's grid: every combination of the values given for each flag, times the (p, q) pairs."""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..base.errors import UsageError
from ..config.schema import RunConfig
from ..runs.directory import run_path


def expand_grid(values: Dict[str, Sequence[Any]], pq_pairs: Optional[Sequence[Tuple[float, float]]] = None
                ) -> List[RunConfig]:
    """Every combination of ``values`` (keys ``section.field``) times the (p, q) pairs.

    Methods whose pruning rule ignores p and q (``lth``) run once, with the first pair."""
    from ..config.methods import resolve

    keys = list(values)
    configs, seen = [], set()
    for combo in itertools.product(*(values[k] for k in keys)):
        for p, q in (pq_pairs or [(None, None)]):
            sections: Dict[str, Dict[str, Any]] = {s: {} for s in RunConfig.SECTIONS}
            for key, v in zip(keys, combo):
                section, name = key.split(".", 1)
                sections[section][name] = v
            if p is not None:
                sections["prune"].update(p=p, q=q)
            cfg = RunConfig.from_dict(sections).validate()
            if pq_pairs and resolve(cfg.prune)[0] != "sap":
                cfg.prune.p, cfg.prune.q = pq_pairs[0]
            key = str(run_path(cfg))
            if key not in seen:
                seen.add(key)
                configs.append(cfg)
    if not configs:
        raise UsageError("the sweep grid has no runs; give at least one value for every flag")
    return configs
