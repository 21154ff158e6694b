"""tl's conformance suite for plugins: ``pytest --tl-conformance=PLUGIN`` (see :mod:`tl_core.testing`).

Each test is parametrized with ``(plugin, name)`` of one registered entry, so a failure names both.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from tl_core.testing import conformance_targets, owned, tiny_data

pytestmark = pytest.mark.tl_conformance

KINDS = {
    "test_backbone_builds_and_its_layer_groups_cover_every_parameter": "backbone",
    "test_backbone_runs_forward_on_its_declared_input": "backbone",
    "test_weights_entries_name_licence_and_hash": "backbone",
    "test_weights_entries_that_can_be_had_offline_load_into_their_backbone": "backbone",
    "test_head_builds_and_maps_features_to_outputs": "head",
    "test_policy_plans_and_freezes_what_it_claims": "policy",
    "test_data_format_is_complete": "data format",
    "test_recipe_validates": "recipe",
    "test_recipe_runs_a_tiny_training": "recipe",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    kind = KINDS.get(metafunc.function.__name__)
    if kind is None or "entry" not in metafunc.fixturenames:
        return
    params, ids = [], []
    for plugin in conformance_targets(metafunc.config):
        for name, item in owned(plugin)[kind]:
            params.append((plugin, name, item))
            ids.append(f"{plugin}:{name}")
    metafunc.parametrize("entry", params or [pytest.param(None, marks=pytest.mark.skip(reason=f"no {kind}"))],
                         ids=ids or None)


@pytest.fixture(autouse=True)
def _offline(tl_env: Any) -> None:
    """Every check runs offline, with caches in a temporary folder."""


def _is_classifier(spec: Any) -> bool:
    return any("classification" in task for task in spec.tasks)


def _build(spec: Any) -> Any:
    """The backbone, built for real. (Building on torch's ``meta`` device would cost no memory, but a factory
    that runs code while it builds - ultralytics computes strides with a forward pass - can leave its library's
    class state on ``meta`` for the rest of the process.)"""
    return spec.factory()


def test_backbone_builds_and_its_layer_groups_cover_every_parameter(entry: Any) -> None:
    from tl_core.policies import group_parameters

    plugin, name, spec = entry
    module = _build(spec)
    assert spec.layer_groups, f"{plugin}: backbone {name!r} declares no layer groups"
    try:
        split = group_parameters(module, spec.layer_groups)
    except ValueError as exc:
        pytest.fail(f"{plugin}: backbone {name!r}: {exc}")
    empty = [g.name for g, params in zip(spec.layer_groups, split) if not params]
    assert not empty, f"{plugin}: backbone {name!r}: layer groups {empty} own no parameter"
    if _is_classifier(spec):
        assert spec.feature_dim > 0, f"{plugin}: backbone {name!r}: feature_dim must be positive"
    for what, given in (("input", spec.input), *((f"weights {w.name}", w) for w in spec.weights)):
        mean, std = given.mean, given.std
        # one value (a gray-level normalisation, broadcast over the channels) or one per channel
        assert len(mean) == len(std) and len(mean) in (1, spec.input.channels) or not _is_classifier(spec), \
            f"{plugin}: backbone {name!r}: {what}'s mean/std have {len(mean)}/{len(std)} values for " \
            f"{spec.input.channels} channels"
        assert all(v > 0 for v in std), f"{plugin}: backbone {name!r}: {what}'s std {std} must be positive"
        assert 0 < given.crop_pct <= 1, f"{plugin}: backbone {name!r}: {what}'s crop_pct {given.crop_pct} not in (0, 1]"
        assert given.interpolation in ("bilinear", "bicubic", "nearest"), \
            f"{plugin}: backbone {name!r}: {what}'s interpolation {given.interpolation!r} is not one tl resizes with"


def test_backbone_runs_forward_on_its_declared_input(entry: Any) -> None:
    import torch

    plugin, name, spec = entry
    if not _is_classifier(spec) or spec.input.size <= 0 or spec.input.channels <= 0:
        pytest.skip(f"{name!r} is a whole model for {', '.join(spec.tasks)}, not a feature extractor")
    size = min(spec.input.size, 64 if spec.input.spatial_dims == 2 else 32)
    x = torch.zeros(2, spec.input.channels, *([size] * spec.input.spatial_dims))
    module = _build(spec).eval()
    with torch.no_grad():
        try:
            out = module(x)
        except (RuntimeError, AssertionError, ValueError):  # a model of one input size (a ViT): its declared size
            if size == spec.input.size:
                raise
            x = torch.zeros(2, spec.input.channels, *([spec.input.size] * spec.input.spatial_dims))
            out = module(x)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, spec.feature_dim), \
        f"{plugin}: backbone {name!r} maps {tuple(x.shape)} to {getattr(out, 'shape', type(out))}, " \
        f"not (2, {spec.feature_dim}) as its feature_dim says"


def test_weights_entries_name_licence_and_hash(entry: Any) -> None:
    plugin, name, spec = entry
    names = [w.name for w in spec.weights]
    assert len(names) == len(set(names)), f"{plugin}: backbone {name!r} has two weights entries of one name"
    for w in spec.weights:
        assert w.licence, f"{plugin}: weights {name}/{w.name} names no licence"
        if w.source == "package":
            assert w.sha256, f"{plugin}: weights {name}/{w.name} ({w.source}) has no sha256 to check the file against"
        elif not w.sha256:  # a publisher (or a user's own folder) that gives no digest: the run records the file's
            # actual sha256, and backbone.sha256 pins it
            warnings.warn(f"{plugin}: weights {name}/{w.name} ({w.source}) has no published sha256", stacklevel=1)
        if w.source == "package":
            assert ":" in w.location and w.package, \
                f"{plugin}: weights {name}/{w.name}: a package entry needs 'module:path' and the pip requirement"


def test_weights_entries_that_can_be_had_offline_load_into_their_backbone(entry: Any) -> None:
    """Each weights entry whose file is on this machine (a package's, a local file, a cached download) loads into
    its architecture for real: a key map that fills less than half of it fails here, not in a user's run."""
    from tl_core.errors import TLError
    from tl_core.weights import load_into, offline_reason

    plugin, name, spec = entry
    here = [w for w in spec.weights if offline_reason(w) is None]
    if not here:
        reasons = "; ".join(f"{w.name}: {offline_reason(w)}" for w in spec.weights) or "it has no weights entries"
        pytest.skip(f"backbone {name!r}: no weights entry can be had offline ({reasons})")
    for weights in here:
        try:
            report = load_into(_build(spec), weights)
        except TLError as exc:
            pytest.fail(f"{plugin}: weights {name}/{weights.name} do not load into {name!r}: {exc}")
        assert report.loaded, f"{plugin}: weights {name}/{weights.name} loaded no tensor"


def test_head_builds_and_maps_features_to_outputs(entry: Any) -> None:
    import torch

    from tl_core.model import make_head

    plugin, name, head = entry
    assert head.tasks, f"{plugin}: head {name!r} names no task"
    if not any("classification" in t for t in head.tasks):
        pytest.skip(f"head {name!r} belongs to its task's model builder ({', '.join(head.tasks)})")
    module = make_head(name, {}, 16, 3).eval()
    with torch.no_grad():
        out = module(torch.zeros(2, 16))
    assert tuple(out.shape) == (2, 3), f"{plugin}: head {name!r} maps (2, 16) to {tuple(out.shape)}, not (2, 3)"


def test_policy_plans_and_freezes_what_it_claims(entry: Any) -> None:
    import torch

    from tl_core.errors import TLError
    from tl_core.model import TransferModel
    from tl_core.policies import apply_plan, param_groups, set_train_mode
    from tl_core.testing import tiny_spec

    plugin, name, policy_cls = entry
    for attr in ("name", "description", "batchnorm"):
        assert getattr(policy_cls, attr, ""), f"{plugin}: policy {name!r} has no {attr}"
    spec = tiny_spec()
    try:
        policy = policy_cls(**getattr(policy_cls, "example", {}))
        policy.bind([g.name for g in spec.layer_groups])
        plans = [policy.plan(3, epoch, 4) for epoch in range(4)]
    except TLError as exc:
        pytest.skip(f"policy {name!r} does not apply to a plain 3-group backbone: {exc}")
    for epoch, plan in enumerate(plans):
        assert len(plan) == 3, f"{plugin}: policy {name!r} planned {len(plan)} states for 3 groups (epoch {epoch})"
    if policy.frozen_throughout():
        assert all(not s.trainable for plan in plans for s in plan), \
            f"{plugin}: policy {name!r} says the backbone is frozen throughout but its plan trains a group"
    torch.manual_seed(0)
    model = TransferModel(spec.factory(), torch.nn.Linear(16, 2))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    apply_plan(model, spec.layer_groups, plans[0])
    set_train_mode(model, spec.layer_groups, plans[0])
    optimizer = torch.optim.SGD(param_groups(model, spec.layer_groups, plans[0], 0.1), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    optimizer.step()
    after = model.backbone.state_dict()
    for group, state in zip(spec.layer_groups, plans[0]):
        keys = [k for k in after if group.owns(k) and not k.endswith("num_batches_tracked")]
        moved = [k for k in keys if not torch.equal(before[k], after[k])]
        if not state.trainable:
            assert not moved, f"{plugin}: policy {name!r} freezes group {group.name!r} but {moved[:3]} changed"
        else:
            assert moved, f"{plugin}: policy {name!r} trains group {group.name!r} but nothing in it changed"


def test_data_format_is_complete(entry: Any) -> None:
    from tl_core.sections import format_options

    plugin, name, fmt = entry
    assert fmt.task, f"{plugin}: data format {name!r} names no task"
    assert callable(fmt.read), f"{plugin}: data format {name!r} has no read function"
    if fmt.options is not None:
        format_options(fmt.options, {})  # the defaults validate: a recipe without data.options works


def test_recipe_validates(entry: Any) -> None:
    from tl_core.errors import TLError
    from tl_core.recipe import load_recipe

    plugin, name, source = entry
    assert source.path.is_file(), f"{plugin}: recipe {name!r} points at {source.path}, which does not exist"
    try:
        recipe = load_recipe(name)
    except TLError as exc:
        pytest.fail(f"{plugin}: recipe {name!r} does not validate: {exc}")
    assert recipe.task


def test_recipe_runs_a_tiny_training(entry: Any, tmp_path: Any) -> None:
    from tl_core.errors import TLError
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    plugin, name, _ = entry
    try:
        recipe = load_recipe(name)
    except TLError:
        pytest.skip(f"recipe {name!r} does not validate (test_recipe_validates says why)")
    overrides = tiny_data(name, tmp_path)
    if overrides is None:
        pytest.skip(f"no tiny data for recipe {name!r} (task {recipe.task!r}): give the plugin a tl_conformance_smoke "
                    "hook (@hookimpl) that writes some and returns the --set overrides")
    tiny = load_recipe(name, overrides)
    report = execute(tiny, tmp_path / "run", quiet=True)
    assert report["epochs"] and report["metrics"], f"{plugin}: recipe {name!r} trained but reported no metrics"
