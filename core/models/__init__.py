"""Model specs and adapters: resolve a spec string to a model, address its layers, read them."""

from core.models.bundle import ModelBundle, Preprocessing, default_stages
from core.models.layers import (
    bundle_gap,
    capture,
    count_hooks,
    gap,
    layer_shapes,
    resolve_layers,
    to_feature_map,
    tokens_to_grid,
)
from core.models.resolve import builtin_models, load_state_dict_file, resolve_model

__all__ = [
    "ModelBundle",
    "Preprocessing",
    "builtin_models",
    "bundle_gap",
    "capture",
    "count_hooks",
    "default_stages",
    "gap",
    "layer_shapes",
    "load_state_dict_file",
    "resolve_layers",
    "resolve_model",
    "to_feature_map",
    "tokens_to_grid",
]
