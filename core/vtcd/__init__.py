"""Video Transformer Concept Discovery, VTCD (dissertation chapter 4, methods.md section 2).

- :func:`analyse`: the whole analysis in one call (a :class:`VTCDAnalysis` that saves itself as a run,
  :func:`load` reads one back); :func:`rosetta` across several analyses or runs.
- :func:`discover`: per video, layer and head, SLIC tubelets in feature space; per head, concepts by
  convex NMF with the elbow's number of clusters.
- :func:`cris`: CRIS importance of every concept (and every head) from batched randomly masked
  forward passes, keeping the whole mask-by-metric record.
- :func:`attribution`, :func:`head_pruning`: validation curves; :func:`rosetta`: concepts shared
  across models.
"""

from core.vtcd.analysis import VTCDAnalysis, analyse
from core.vtcd.attribution import AttributionCurves, attribution_curves, occlusion_importance
from core.vtcd.cnmf import CNMFResult, convex_nmf, elbow_kmeans, silhouette
from core.vtcd.config import RosettaConfig, VTCDConfig
from core.vtcd.features import FeatureSite, extract_features, feature_sites, prepare_videos
from core.vtcd.importance import CRISResult, cris_units, draw_masks, importance_from_masks
from core.vtcd.masking import UnitSet, masked_metrics, masked_metrics_reference
from core.vtcd.pipeline import HeadConcepts, VTCDImportance, VTCDResult, attribution, cris, discover, head_pruning
from core.vtcd.rosetta import (
    RosettaAnalysis,
    RosettaResult,
    RosettaTuple,
    rosetta,
    rosetta_of_runs,
    rosetta_tuples,
    to_common_grid,
)
from core.vtcd.store import VTCDRun, load
from core.vtcd.tubelets import Tubelets, video_tubelets

__all__ = [
    "AttributionCurves",
    "CNMFResult",
    "CRISResult",
    "FeatureSite",
    "HeadConcepts",
    "RosettaAnalysis",
    "RosettaConfig",
    "RosettaResult",
    "RosettaTuple",
    "Tubelets",
    "UnitSet",
    "VTCDAnalysis",
    "VTCDConfig",
    "VTCDImportance",
    "VTCDResult",
    "VTCDRun",
    "analyse",
    "attribution",
    "attribution_curves",
    "convex_nmf",
    "cris",
    "cris_units",
    "discover",
    "draw_masks",
    "elbow_kmeans",
    "extract_features",
    "feature_sites",
    "head_pruning",
    "importance_from_masks",
    "load",
    "masked_metrics",
    "masked_metrics_reference",
    "occlusion_importance",
    "prepare_videos",
    "rosetta",
    "rosetta_of_runs",
    "rosetta_tuples",
    "silhouette",
    "to_common_grid",
    "video_tubelets",
]
