"""Evaluation metrics; each registers itself in :data:`unmask.registry.METRICS`.

Every metric is of one declared kind (:mod:`unmask.metrics.kinds`: faithfulness,
localisation, similarity, explanation image, artifact, contrastive, map, explainer), which
fixes its call; :func:`evaluate` runs several of them, computing shared curves once. Every
module of this package is imported here, so adding a metric is adding a file. Metrics never
import an explainer: most score given maps; those of kind ``"explainer"`` (randomisation,
robustness) are handed one and re-run it. Studies that report curves over hyperparameters or
layers are in :mod:`unmask.studies`.
"""

import importlib
import pkgutil

from ..registry import METRICS

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METRICS"]

# The kinds, one evaluate, the contrastive metrics.
from .contrastive import CAUC, CDROP, ContrastiveCurve, cauc, cdrop, contrastive_curve  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .kinds import METRIC_KINDS, MetricKind, declare_kind, kind_of  # noqa: E402

__all__ += [
    "CAUC",
    "CDROP",
    "ContrastiveCurve",
    "METRIC_KINDS",
    "MetricKind",
    "cauc",
    "cdrop",
    "contrastive_curve",
    "declare_kind",
    "evaluate",
    "kind_of",
]

# Localisation, saliency metric, map similarity (the studies built on them: unmask.studies).
from .localisation import (  # noqa: E402
    ALPHAS,
    EnergyPointingGame,
    LocalisationError,
    PointingGame,
    box_iou,
    energy_pointing_game,
    localisation_error,
    localisation_iou,
    pointing_game,
    saliency_boxes,
    select_alpha,
)
from .saliency_metric import SaliencyMetric, saliency_metric, select_saliency_alpha  # noqa: E402
from .similarity import SSIM, HOGPearson, Spearman, hog_pearson, spearman, ssim  # noqa: E402

__all__ += [
    "ALPHAS",
    "EnergyPointingGame",
    "HOGPearson",
    "LocalisationError",
    "PointingGame",
    "SSIM",
    "SaliencyMetric",
    "Spearman",
    "box_iou",
    "energy_pointing_game",
    "hog_pearson",
    "localisation_error",
    "localisation_iou",
    "pointing_game",
    "saliency_boxes",
    "saliency_metric",
    "select_alpha",
    "select_saliency_alpha",
    "spearman",
    "ssim",
]

# Faithfulness: single step (IIC, AD, ADD), deletion / insertion (DAUC, IAUC, DC, IC), the
# reference substrates; `unmask.metrics.compat` is the saliency_maps_metrics drop-in.
from . import compat  # noqa: E402
from .deletion import (  # noqa: E402
    Curve,
    Deletion,
    DeletionCorrelation,
    Insertion,
    InsertionCorrelation,
    curve_auc,
    curve_correlation,
    deletion_curve,
    insertion_curve,
    pixel_ranks,
    plan_steps,
)
from .single_step import (  # noqa: E402
    AverageDrop,
    AverageDropInDeletion,
    IncreaseInConfidence,
    average_drop,
    average_drop_in_deletion,
    increase_in_confidence,
    single_step_scores,
)

__all__ += [
    "AverageDrop",
    "AverageDropInDeletion",
    "Curve",
    "Deletion",
    "DeletionCorrelation",
    "IncreaseInConfidence",
    "Insertion",
    "InsertionCorrelation",
    "average_drop",
    "average_drop_in_deletion",
    "compat",
    "curve_auc",
    "curve_correlation",
    "deletion_curve",
    "increase_in_confidence",
    "insertion_curve",
    "pixel_ranks",
    "plan_steps",
    "single_step_scores",
]

# Every other registered metric's class: axiomatic, complexity, explanation-image (CP,
# retained probability, hallucination), faithfulness (Quantus's catalogue, infidelity, IROF,
# ROAD), randomisation and robustness.
from .axiomatic import Completeness, InputInvariance, NonSensitivity  # noqa: E402
from .complexity import Complexity, EffectiveComplexity, Sparseness  # noqa: E402
from .cp import CPScore, RetainedProbability  # noqa: E402
from .faithfulness import (  # noqa: E402
    FaithfulnessCorrelation,
    Monotonicity,
    MonotonicityCorrelation,
    RegionPerturbation,
    Selectivity,
    SensitivityN,
)
from .hallucination import HallucinationScore  # noqa: E402
from .infidelity import Infidelity  # noqa: E402
from .irof import IROF  # noqa: E402
from .randomisation import ModelParameterRandomisation, RandomLogit  # noqa: E402
from .road import RoadCombined, RoadLeRF, RoadMoRF  # noqa: E402
from .robustness import (  # noqa: E402
    AvgSensitivity,
    Continuity,
    LocalLipschitzEstimate,
    MaxSensitivity,
    RelativeInputStability,
    RelativeOutputStability,
    RelativeRepresentationStability,
)

__all__ += [
    "AvgSensitivity",
    "CPScore",
    "Completeness",
    "Complexity",
    "Continuity",
    "EffectiveComplexity",
    "FaithfulnessCorrelation",
    "HallucinationScore",
    "IROF",
    "Infidelity",
    "InputInvariance",
    "LocalLipschitzEstimate",
    "MaxSensitivity",
    "ModelParameterRandomisation",
    "Monotonicity",
    "MonotonicityCorrelation",
    "NonSensitivity",
    "RandomLogit",
    "RegionPerturbation",
    "RelativeInputStability",
    "RelativeOutputStability",
    "RelativeRepresentationStability",
    "RetainedProbability",
    "RoadCombined",
    "RoadLeRF",
    "RoadMoRF",
    "Selectivity",
    "SensitivityN",
    "Sparseness",
]
