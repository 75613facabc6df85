"""incop: iterative magnitude pruning with Information Consistent Pruning (InCoP) stopping.

The packages, from the ground up (each imports only those before it; tests/cli/test_layers.py
checks): base, then pruning, data and models, then stopping, config, engine, runs, track and
report, deploy, launch; the Python API (``api``) and the command line (``cli``) on top."""
from .base.version import __version__  # noqa: E402,F401

from . import _moved  # noqa: E402
_moved.install()  # the module paths from before 0.2 (incop.speed, ...), forwarded until 0.5

from .config.schema import (DataConfig, ExperimentConfig, ModelConfig, PruneConfig, RunConfig,  # noqa: E402
                            TrainConfig)
from .base.errors import UsageError  # noqa: E402
from .pruning.masks import Masks, prunable_parameters, weight_catalogue  # noqa: E402
from .pruning.rules import SAP, GlobalMagnitude, LayerwiseMagnitude, pq_index  # noqa: E402
from .stopping.flows import GradientFlow, InformationFlow  # noqa: E402
from .stopping.criteria import (AccuracyRecovery, FixedEpochs, GradientFlowCriterion,  # noqa: E402
                                InformationFlowCriterion, LossRecovery, MaskStability,
                                StoppingCriterion)
from .pruning.torch_prune import (MagnitudePruning, SAPPruning, masks_from_torch_prune,  # noqa: E402
                                  remove_reparametrization, to_torch_prune)
from .api import Landing, PruneResult, ablate, prune_model  # noqa: E402
from .config.recipes import DEFAULT_RECIPE  # noqa: E402
from .config.schema import with_recipe  # noqa: E402
from . import data  # noqa: E402,F401  (registers the npz and folder datasets)
from .pruning.sparse_files import load_sparse, save_sparse  # noqa: E402
from .deploy.export import export_model  # noqa: E402
from .deploy.sparse_inference import fastest_sparse_model  # noqa: E402
from .deploy.fast_model_files import load_fast_model, save_fast_model  # noqa: E402

__all__ = ["__version__", "RunConfig", "DataConfig", "ModelConfig", "TrainConfig", "PruneConfig",
           "ExperimentConfig", "UsageError", "Masks", "prunable_parameters", "weight_catalogue", "SAP",
           "GlobalMagnitude", "LayerwiseMagnitude", "pq_index", "InformationFlow", "GradientFlow",
           "StoppingCriterion", "FixedEpochs", "InformationFlowCriterion", "GradientFlowCriterion",
           "AccuracyRecovery", "MaskStability", "LossRecovery", "SAPPruning", "MagnitudePruning", "to_torch_prune",
           "remove_reparametrization", "masks_from_torch_prune", "prune_model", "PruneResult", "Landing", "ablate",
           "with_recipe", "DEFAULT_RECIPE",
           "load_sparse", "save_sparse", "export_model", "fastest_sparse_model",
           "save_fast_model", "load_fast_model"]
