"""Recipes: validation with key-naming errors, extends, --set, registry names, shipped recipes."""

from __future__ import annotations

import pytest
from conftest import tiny_recipe

from tl_core.errors import RecipeError
from tl_core.plugins import registry
from tl_core.recipe import load_recipe


@pytest.fixture
def recipe_file(tiny_plugin, image_folder, write_recipe):
    return write_recipe(tiny_recipe(image_folder))


def test_defaults_fill_in_and_fixed_names_exist(recipe_file):
    r = load_recipe(str(recipe_file))
    assert r.task == "image-classification"
    assert (r.backbone.name, r.backbone.weights, r.head.name, r.policy.name) == ("tiny", "pretrained", "linear",
                                                                                  "fine-tune")
    assert (r.data.format, r.data.val_fraction, r.data.test_path) == ("image-folder", 0.25, None)
    assert (r.train.epochs, r.train.batch_size, r.train.lr, r.train.seed, r.train.device) == (2, 8, 0.01, 0, "cpu")
    assert r.compare.scratch is False
    # the policy's options are filled with their defaults, so the report shows what really ran
    assert r.policy.options == {"backbone_lr_mult": 0.1, "layer_decay": 1.0, "bn": "train"}


def test_unknown_key_names_it_and_suggests(tiny_plugin, image_folder, write_recipe):
    data = tiny_recipe(image_folder)
    data["train"]["epoch"] = 3
    with pytest.raises(RecipeError, match=r"unknown key 'train.epoch' \(did you mean 'epochs'\?\)"):
        load_recipe(str(write_recipe(data)))


def test_unknown_top_level_key(tiny_plugin, image_folder, write_recipe):
    data = {**tiny_recipe(image_folder), "trian": {}}
    with pytest.raises(RecipeError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        load_recipe(str(write_recipe(data)))


def test_wrong_type_names_the_key_and_value(tiny_plugin, image_folder, write_recipe):
    data = tiny_recipe(image_folder, train={"epochs": "ten"})
    with pytest.raises(RecipeError, match=r"train.epochs: .*integer.*'ten'"):
        load_recipe(str(write_recipe(data)))


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("backbone", {"name": "resnet19"}, r"backbone.name: unknown backbone 'resnet19' \(did you mean 'resnet18'"),
        ("policy", {"name": "fine-tuning"}, r"policy.name: unknown policy 'fine-tuning' \(did you mean 'fine-tune'"),
        ("head", {"name": "mpl"}, r"head.name: unknown head 'mpl' \(did you mean 'mlp'"),
        ("data", {"format": "imagefolder"}, r"data.format: unknown data format 'imagefolder' \(did you mean"),
    ],
)
def test_unknown_registry_names(tiny_plugin, image_folder, write_recipe, section, value, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(write_recipe(tiny_recipe(image_folder, **{section: value}))))


def test_unknown_policy_option_suggests(tiny_plugin, image_folder, write_recipe):
    data = tiny_recipe(image_folder, policy={"name": "fine-tune", "backbone_lr": 0.1})
    with pytest.raises(RecipeError, match=r"unknown key 'policy.backbone_lr' \(did you mean 'backbone_lr_mult'"):
        load_recipe(str(write_recipe(data)))


def test_unknown_weights_entry(tiny_plugin, image_folder, write_recipe):
    data = tiny_recipe(image_folder, backbone={"name": "tiny", "weights": "imagenet"})
    with pytest.raises(RecipeError, match="no weights entry 'imagenet'.*known: pretrained"):
        load_recipe(str(write_recipe(data)))


def test_extends_merges_and_a_new_policy_name_drops_old_options(tiny_plugin, image_folder, write_recipe):
    write_recipe(tiny_recipe(image_folder, policy={"name": "fine-tune", "backbone_lr_mult": 0.5}), "base.yaml")
    child = write_recipe({"extends": "base.yaml", "train": {"epochs": 7}, "policy": {"name": "freeze-first",
                                                                                       "groups": 2}}, "child.yaml")
    r = load_recipe(str(child))
    assert r.train.epochs == 7 and r.train.batch_size == 8  # merged
    assert r.policy.name == "freeze-first" and r.policy.options["groups"] == 2
    assert r.policy.options["backbone_lr_mult"] == 1.0  # freeze-first's default, not fine-tune's 0.5


def test_extends_a_registered_recipe(image_folder, write_recipe):
    child = write_recipe({"extends": "vision/linear-probe", "data": {"path": str(image_folder)}})
    r = load_recipe(str(child))
    assert r.backbone.name == "mobilenet_v2" and r.policy.name == "feature-extraction"


def test_extends_in_a_circle(write_recipe):
    write_recipe({"extends": "b.yaml"}, "a.yaml")
    b = write_recipe({"extends": "a.yaml"}, "b.yaml")
    with pytest.raises(RecipeError, match="goes round in a circle"):
        load_recipe(str(b))


def test_set_overrides_with_yaml_values(recipe_file):
    r = load_recipe(str(recipe_file), ["train.epochs=5", "train.lr=3e-4", "compare.scratch=true",
                                       "policy.backbone_lr_mult=0.2", "backbone.weights=none"])
    assert (r.train.epochs, r.train.lr, r.compare.scratch) == (5, 3e-4, True)
    assert r.policy.options["backbone_lr_mult"] == 0.2 and r.backbone.random_init


def test_set_another_policy_name_drops_the_old_policys_options(recipe_file):
    r = load_recipe(str(recipe_file), ["policy.name=freeze-first", "policy.groups=2"])
    assert r.policy.name == "freeze-first" and r.policy.options["groups"] == 2
    r = load_recipe(str(recipe_file), ["policy.layer_decay=0.5", "policy.name=feature-extraction"])
    assert r.policy.options == {}  # feature-extraction takes no options; fine-tune's are gone
    r = load_recipe(str(recipe_file), ["policy.name=fine-tune", "policy.layer_decay=0.5"])  # same name: kept
    assert r.policy.options["layer_decay"] == 0.5


def test_amp_no_unquoted_means_no_mixed_precision(recipe_file):
    """YAML reads `no` as false; `train.amp=no` must still mean no mixed precision, not a type error."""
    assert load_recipe(str(recipe_file), ["train.amp=no"]).train.amp == "no"
    with pytest.raises(RecipeError, match="train.amp"):
        load_recipe(str(recipe_file), ["train.amp=yes"])


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train.epoch=3", r"--set train.epoch: no such recipe key \(did you mean 'train.epochs'"),
        ("trainer.epochs=3", r"--set trainer.epochs: no such recipe key \(did you mean 'train'"),
        ("train.epochs", "expected key.path=value"),
        ("policy.nonsense=1", r"unknown key 'policy.nonsense'"),
        ("train.epochs=many", r"train.epochs: .*integer.*'many'"),
    ],
)
def test_bad_set(recipe_file, assignment, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(recipe_file), [assignment])


def test_relative_paths_resolve_against_the_recipe_file(tiny_plugin, image_folder, write_recipe):
    path = write_recipe(tiny_recipe("images"))  # image_folder is tmp_path/images, next to the recipe
    assert load_recipe(str(path)).data.path == str(image_folder)


def test_a_scheme_value_is_not_a_relative_path(tiny_plugin, write_recipe):
    """`bible:ny-en` (a data set a plugin provides) or `hf:owner/name` stay as written; `C:/x` is not a scheme."""
    path = write_recipe(tiny_recipe("bible:ny-en", backbone={"name": "tiny", "weights": "hf:owner/model"}))
    recipe = load_recipe(str(path))
    assert recipe.data.path == "bible:ny-en" and recipe.backbone.weights == "hf:owner/model"
    assert load_recipe(str(write_recipe(tiny_recipe("x:/data")))).data.path.endswith("x:/data")


def test_recipe_is_data_not_code(tiny_plugin, write_recipe, tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("task: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(str(path))
    assert not (tmp_path / "pwned").exists()


def test_missing_recipe_file_and_unknown_recipe_name():
    with pytest.raises(RecipeError, match="recipe file 'nope.yaml' does not exist"):
        load_recipe("nope.yaml")
    with pytest.raises(RecipeError, match=r"unknown recipe 'vision/linear-prob' \(did you mean 'vision/linear-probe'"):
        load_recipe("vision/linear-prob")


@pytest.mark.parametrize("name", ["vision/linear-probe", "vision/fine-tune"])
def test_shipped_recipes_validate(name, image_folder):
    assert name in registry("recipe")
    r = load_recipe(name, [f"data.path={image_folder}"])
    assert r.backbone.weights == "imagenet"


def test_data_format_options_are_validated_by_the_format(tiny_plugin, image_folder, write_recipe):
    from pydantic import BaseModel, ConfigDict

    from tl_core import hookimpl
    from tl_core.components import DataFormat
    from tl_core.plugins import register_plugin, unregister_plugin

    class Windows(BaseModel):
        model_config = ConfigDict(extra="forbid")
        window: str = "lung"

    class Formats:
        @hookimpl
        def tl_register_datasets(self, register):
            register(DataFormat("ct-folder", "image-classification", read=None, options=Windows))

    register_plugin(Formats(), "formats")
    try:
        path = write_recipe(tiny_recipe(image_folder, data={"format": "ct-folder", "options": {"window": "bone"}}))
        assert load_recipe(str(path)).data.options == {"window": "bone"}
        assert load_recipe(str(path), ["data.options.window=brain"]).data.options == {"window": "brain"}
        with pytest.raises(RecipeError, match=r"unknown key 'data.options.windw' \(did you mean 'window'"):
            load_recipe(str(path), ["data.options.windw=brain"])
    finally:
        unregister_plugin("formats")
    with pytest.raises(RecipeError, match="'data.options.window': data format 'image-folder' takes no options"):
        load_recipe(str(path), ["data.format=image-folder"])
