"""incop: iterative magnitude pruning with Information Consistent Pruning (InCoP) stopping."""
__version__ = "0.1.0"

from .config import (DataConfig, ExperimentConfig, ModelConfig, PruneConfig, RunConfig,  # noqa: E402
                     TrainConfig)
from .errors import UsageError  # noqa: E402
from .masks import Masks, prunable_parameters, weight_catalogue  # noqa: E402
from .pruning import SAP, GlobalMagnitude, LayerwiseMagnitude, pq_index  # noqa: E402
from .flows import GradientFlow, InformationFlow  # noqa: E402
from .stopping import (AccuracyRecovery, FixedEpochs, GradientFlowCriterion,  # noqa: E402
                       InformationFlowCriterion, LossRecovery, MaskStability, StoppingCriterion)
from .torch_prune import (MagnitudePruning, SAPPruning, masks_from_torch_prune,  # noqa: E402
                          remove_reparametrization, to_torch_prune)
from .api import PruneResult, prune_model  # noqa: E402
from . import own_data  # noqa: E402,F401  (registers the npz and folder datasets)
from .sparse_io import load_sparse, save_sparse  # noqa: E402
from .export import export_model  # noqa: E402
from .speed import fastest_sparse_model  # noqa: E402

__all__ = ["__version__", "RunConfig", "DataConfig", "ModelConfig", "TrainConfig", "PruneConfig",
           "ExperimentConfig", "UsageError", "Masks", "prunable_parameters", "weight_catalogue", "SAP",
           "GlobalMagnitude", "LayerwiseMagnitude", "pq_index", "InformationFlow", "GradientFlow",
           "StoppingCriterion", "FixedEpochs", "InformationFlowCriterion", "GradientFlowCriterion",
           "AccuracyRecovery", "MaskStability", "LossRecovery", "SAPPruning", "MagnitudePruning", "to_torch_prune",
           "remove_reparametrization", "masks_from_torch_prune", "prune_model", "PruneResult",
           "load_sparse", "save_sparse", "export_model", "fastest_sparse_model"]
