"""Visual Concept Connectome, VCC (dissertation chapter 5, methods.md section 3).

:func:`analyse` (model, images, classes, config, store) is the entry point and :func:`debug` the failure
debugger (both in ``analysis``); :func:`build_vcc` runs the pipeline for one class on arrays;
``store`` owns the run layout (``VCCResult.save`` / ``VCCResult.load``). The modules hold the parts:
``segments`` (top-down feature-space segments), ``concepts`` (k-means concepts per layer),
``itcav`` (CAVs, interlayer edges, significance), ``graph`` (the graph, JSON, metrics),
``fidelity`` (concept suppression, APS vs LS) and ``forward`` (the hooked passes they share).
"""

from core.vcc import debug as _debug_module  # noqa: F401  (loaded before the function takes its name)
from core.vcc.analysis import analyse, debug
from core.vcc.concepts import LayerConcepts, discover_concepts, nearest_concepts
from core.vcc.config import Commonality, PruneSigmoid, VCCConfig, VCCDebugConfig
from core.vcc.fidelity import (
    SuppressionCurves,
    aps_ls_correlation,
    average_path_strength,
    logit_sums,
    suppression_curves,
)
from core.vcc.graph import CLASS_LAYER, Edge, LayerMetrics, Node, VCCGraph, class_node_id, concept_id
from core.vcc.itcav import LayerCAVs, edge_pvalues, edge_values, fit_cavs, random_sets, sensitivities
from core.vcc.pipeline import Fidelity, VCCResult, build_vcc
from core.vcc.segments import Segments, segment_crop, segment_inputs, split_region, top_down_segments, upsample_mask

__all__ = [
    "CLASS_LAYER",
    "Commonality",
    "Edge",
    "Fidelity",
    "LayerCAVs",
    "LayerConcepts",
    "LayerMetrics",
    "Node",
    "PruneSigmoid",
    "Segments",
    "SuppressionCurves",
    "VCCConfig",
    "VCCDebugConfig",
    "VCCGraph",
    "VCCResult",
    "analyse",
    "aps_ls_correlation",
    "average_path_strength",
    "build_vcc",
    "class_node_id",
    "concept_id",
    "debug",
    "discover_concepts",
    "edge_pvalues",
    "edge_values",
    "fit_cavs",
    "logit_sums",
    "nearest_concepts",
    "random_sets",
    "segment_crop",
    "segment_inputs",
    "sensitivities",
    "split_region",
    "suppression_curves",
    "top_down_segments",
    "upsample_mask",
]
