"""incop: iterative magnitude pruning with Information Consistent Pruning (InCoP) stopping."""
__version__ = "0.1.0"

from .config import (DataConfig, ExperimentConfig, ModelConfig, PruneConfig, RunConfig,  # noqa: E402
                     TrainConfig)
from .errors import UsageError  # noqa: E402
from .masks import Masks, prunable_parameters  # noqa: E402
from .pruning import SAP, GlobalMagnitude, LayerwiseMagnitude, pq_index  # noqa: E402

__all__ = ["__version__", "RunConfig", "DataConfig", "ModelConfig", "TrainConfig", "PruneConfig",
           "ExperimentConfig", "UsageError", "Masks", "prunable_parameters", "SAP",
           "GlobalMagnitude", "LayerwiseMagnitude", "pq_index"]
