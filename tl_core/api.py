"""The names a plugin may use: everything a plugin package and the ``tl new-plugin`` template (its tests included) need,
declared here in ``__all__`` and documented in docs/plugin_hooks.md ("The API a plugin uses"). The pytest fixtures
and the conformance suite's names (``ConformanceSwap``) are :mod:`tl_core.testing`'s. A plugin imports the hook
marker and these names only: ``from tl_core import hookimpl`` and ``from tl_core.api import BackboneSpec, ...``.
Everything else in ``tl_core`` may change without notice; ``tests/test_api.py`` holds the bundled plugins and the
template to this, and checks that every name here is documented.

A name is imported the first time it is used (PEP 562), from the module that defines it: a plugin module that
imports ``BackboneSpec`` loads the torch-free data types, not the trainer, so ``tl plugins`` and ``tl --help`` stay
instant. The few names that need torch (``Pooled``, ``TransferModel``, ``build_backbone``, ``backbone_for``,
``make_head``, ``BuiltBackbone``) import it when they are first used, which should be inside a factory or a hook.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "BackboneSpec",
    "BuiltBackbone",
    "ClassificationData",
    "DataConfig",
    "DataError",
    "DataFormat",
    "FeatureSet",
    "FineTune",
    "FineTuneOptions",
    "FreezePolicy",
    "GroupState",
    "HOOK_API_VERSION",
    "HeadSpec",
    "InputSpec",
    "LayerGroup",
    "LoadReport",
    "MODEL_FILE",
    "ModelBundle",
    "PluginError",
    "Pooled",
    "Recipe",
    "RecipeError",
    "RecipeSource",
    "RegistryError",
    "RunContext",
    "RunError",
    "Samples",
    "TLError",
    "TaskSpec",
    "TaskSteps",
    "TrainConfig",
    "TrainResult",
    "TransferModel",
    "WeightsEntry",
    "WeightsError",
    "apply_plan",
    "backbone_for",
    "beside",
    "build_backbone",
    "cache_dir",
    "cached_features",
    "commit_file",
    "commit_folder",
    "core_backbone",
    "csv_records",
    "decode_text",
    "did_you_mean",
    "evaluate_outputs",
    "execute",
    "feature_key",
    "format_options",
    "group_parameters",
    "hookimpl",
    "image_failure",
    "is_path",
    "load_classification",
    "load_into",
    "load_recipe",
    "load_run_state",
    "make_head",
    "make_policy",
    "package_file",
    "parse_json",
    "parse_yaml",
    "plugins",
    "random_split",
    "read_image_csv",
    "read_image_folder",
    "read_json",
    "read_new",
    "read_report",
    "read_run_state",
    "read_state_dict",
    "read_text",
    "read_yaml",
    "recipes_in",
    "reference_folder",
    "register_plugin",
    "registry",
    "require_every_class",
    "reset_plugins",
    "resolve_device",
    "resolve_precision",
    "resolve_weights",
    "set_train_mode",
    "sha256_of",
    "stratified_split",
    "train_task",
    "unregister_plugin",
    "validate_recipe",
    "write_atomic",
    "write_image_folder",
    "write_json",
]

#: where each declared name lives: ``"module"`` (same name) or ``"module:name"``
WHERE = {
    "HOOK_API_VERSION": "tl_core", "hookimpl": "tl_core",
    **dict.fromkeys(("TLError", "RecipeError", "RegistryError", "WeightsError", "DataError", "RunError",
                     "PluginError", "did_you_mean"), "tl_core.errors"),
    **dict.fromkeys(("BackboneSpec", "InputSpec", "LayerGroup", "HeadSpec", "DataFormat", "ModelBundle",
                     "RecipeSource", "recipes_in", "TrainResult", "TaskSteps", "TaskSpec", "FeatureSet"),
                    "tl_core.components"),
    **dict.fromkeys(("WeightsEntry", "LoadReport", "load_into", "read_state_dict", "is_path", "package_file",
                     "cache_dir", "sha256_of", "resolve_weights", "read_run_state", "load_run_state",
                     "reference_folder"),
                    "tl_core.weights"),
    **dict.fromkeys(("Recipe", "DataConfig", "TrainConfig", "format_options"), "tl_core.sections"),
    "load_recipe": "tl_core.recipe", "validate_recipe": "tl_core.recipe:validate",
    **dict.fromkeys(("Samples", "ClassificationData", "load_classification", "csv_records", "beside",
                     "require_every_class", "stratified_split", "random_split", "image_failure", "read_new"),
                    "tl_core.data"),
    **dict.fromkeys(("read_image_folder", "read_image_csv"), "tl_core.builtin.classification.images"),
    "core_backbone": "tl_core.builtin.classification.backbones",
    **dict.fromkeys(("FreezePolicy", "GroupState", "FineTune", "apply_plan", "group_parameters", "set_train_mode"),
                    "tl_core.policies"),
    "FineTuneOptions": "tl_core.policy_options",
    **dict.fromkeys(("make_policy", "train_task", "feature_key"), "tl_core.task"),
    "cached_features": "tl_core.features:cached",
    **dict.fromkeys(("registry", "plugins", "register_plugin", "unregister_plugin"), "tl_core.plugins"),
    "reset_plugins": "tl_core.plugins:reset",
    **dict.fromkeys(("Pooled", "TransferModel", "BuiltBackbone", "build_backbone", "backbone_for", "make_head"),
                    "tl_core.model"),
    **dict.fromkeys(("evaluate_outputs", "resolve_device", "resolve_precision"), "tl_core.train"),
    "RunContext": "tl_core.context",
    "execute": "tl_core.run",
    **dict.fromkeys(("read_report", "MODEL_FILE"), "tl_core.report"),
    **dict.fromkeys(("write_atomic", "write_json", "commit_file", "commit_folder", "decode_text", "read_text",
                     "parse_json", "read_json", "parse_yaml", "read_yaml"), "tl_core.files"),
    "write_image_folder": "tl_core.sample_data",
}


def __getattr__(name: str) -> Any:
    where = WHERE.get(name)
    if where is None:
        raise AttributeError(f"tl_core.api has no {name!r}: the names a plugin may use are tl_core.api.__all__")
    module, _, attribute = where.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value  # the next use is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what a type checker sees: the same names, imported for real
    from tl_core import HOOK_API_VERSION, hookimpl
    from tl_core.builtin.classification.backbones import core_backbone
    from tl_core.builtin.classification.images import read_image_csv, read_image_folder
    from tl_core.components import (
        BackboneSpec,
        DataFormat,
        FeatureSet,
        HeadSpec,
        InputSpec,
        LayerGroup,
        ModelBundle,
        RecipeSource,
        TaskSpec,
        TaskSteps,
        TrainResult,
        recipes_in,
    )
    from tl_core.context import RunContext
    from tl_core.data import (
        ClassificationData,
        Samples,
        beside,
        csv_records,
        image_failure,
        load_classification,
        random_split,
        read_new,
        require_every_class,
        stratified_split,
    )
    from tl_core.errors import (
        DataError,
        PluginError,
        RecipeError,
        RegistryError,
        RunError,
        TLError,
        WeightsError,
        did_you_mean,
    )
    from tl_core.features import cached as cached_features
    from tl_core.files import (
        commit_file,
        commit_folder,
        decode_text,
        parse_json,
        parse_yaml,
        read_json,
        read_text,
        read_yaml,
        write_atomic,
        write_json,
    )
    from tl_core.model import BuiltBackbone, Pooled, TransferModel, backbone_for, build_backbone, make_head
    from tl_core.plugins import plugins, register_plugin, registry, unregister_plugin
    from tl_core.plugins import reset as reset_plugins
    from tl_core.policies import FineTune, FreezePolicy, GroupState, apply_plan, group_parameters, set_train_mode
    from tl_core.policy_options import FineTuneOptions
    from tl_core.recipe import load_recipe
    from tl_core.recipe import validate as validate_recipe
    from tl_core.report import MODEL_FILE, read_report
    from tl_core.run import execute
    from tl_core.sample_data import write_image_folder
    from tl_core.sections import DataConfig, Recipe, TrainConfig, format_options
    from tl_core.task import feature_key, make_policy, train_task
    from tl_core.train import evaluate_outputs, resolve_device, resolve_precision
    from tl_core.weights import (
        LoadReport,
        WeightsEntry,
        cache_dir,
        is_path,
        load_into,
        load_run_state,
        package_file,
        read_run_state,
        read_state_dict,
        reference_folder,
        resolve_weights,
        sha256_of,
    )
