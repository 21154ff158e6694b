"""Any model of timm, torchvision or the Hugging Face hub as a backbone by name (``timm:NAME``, ``torchvision:NAME``,
``hf:ID``; issue 14): built from the library's own metadata - pooled features, layer groups (timm's
``group_matcher``, torchvision's stages, a transformers encoder's layers), preprocessing (``pretrained_cfg``, the
weights enum's ``transforms()``, the image processor), weights entries (the hub file; torchvision's URL and hash
prefix) - and held to the recipe's pins (``backbone.sha256``, ``backbone.revision``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import make_image_folder, tiny_recipe

from tl_core.testing import assert_refused


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:convnext_atto"])
def test_a_timm_model_trains_one_tiny_epoch_from_its_config(name, write_recipe, cli, tmp_path):
    images = make_image_folder(tmp_path / "images", per_class=4, size=64)  # 9 training images: 3 batches of 3
    recipe = write_recipe(tiny_recipe(images, backbone={"name": name, "weights": "none"},
                                      policy={"name": "fine-tune", "layer_decay": 0.7},
                                      train={"epochs": 1, "batch_size": 3}, data={"image_size": 64}))
    code, _, err = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["recipe"]["backbone"]["name"] == name and report["parameters"]["trainable"] > 0
    assert report["preprocessing"]["interpolation"] in ("bicubic", "bilinear")  # timm's own, not the core default
    code, out, _ = cli("inspect", recipe, "--json")
    rows = json.loads(out)
    assert rows[0]["group"] == "group0" and sum(r["trainable_parameters"] for r in rows) == sum(
        r["parameters"] for r in rows)


def test_the_groups_are_timms_and_cover_every_parameter():
    import timm
    import torch
    from timm.models import group_parameters

    from tl_core.plugins import registry

    spec = registry("backbone").get("timm:convnext_atto")
    model = spec.factory()
    names = [n for n, _ in model.named_parameters()]
    owners = {n: [g.name for g in spec.layer_groups if g.owns(n)] for n in names}
    assert all(len(o) == 1 for o in owners.values()), [n for n, o in owners.items() if len(o) != 1][:3]
    timm_groups = group_parameters(model, model.group_matcher(coarse=False))
    for index, params in timm_groups.items():
        assert {owners[n][0] for n in params} == {f"group{index}"}
    cfg = timm.create_model("convnext_atto", pretrained=False).pretrained_cfg
    assert spec.input.mean == tuple(cfg["mean"]) and spec.input.crop_pct == cfg["crop_pct"]
    assert spec.feature_dim == model.num_features == model(torch.zeros(1, 3, 32, 32)).shape[-1]
    entry = spec.weights[0]
    assert entry.source == "hf" and entry.location == f"{cfg['hf_hub_id']}/model.safetensors"
    assert entry.classifier == (cfg["classifier"],)


def test_layer_wise_decay_over_timms_groups_matches_timms_own():
    """tl's fine-tune plan (layer_decay d) gives every parameter of a timm backbone the learning-rate scale timm's
    param_groups_layer_decay gives it (the model without a classifier: the last group at scale 1 in both)."""
    from timm.optim import param_groups_layer_decay

    from tl_core.plugins import registry
    from tl_core.policies import FineTune

    spec = registry("backbone").get("timm:convnext_atto")
    model = spec.factory()
    decay = 0.65
    plan = FineTune(backbone_lr_mult=1.0, layer_decay=decay).plan(len(spec.layer_groups), 0, 1)
    mine = {}
    for name, _ in model.named_parameters():
        index = next(i for i, g in enumerate(spec.layer_groups) if g.owns(name))
        mine[name] = plan[index].lr_mult
    by_id = {id(p): n for n, p in model.named_parameters()}
    theirs = {by_id[id(p)]: group["lr_scale"]
              for group in param_groups_layer_decay(model, weight_decay=0.0, layer_decay=decay)
              for p in group["params"]}
    assert set(mine) == set(theirs)
    assert all(mine[n] == pytest.approx(theirs[n]) for n in mine)
    assert len({round(v, 9) for v in mine.values()}) == len(spec.layer_groups)  # one scale per group: decay applies


def test_unknown_names_and_tags_are_one_line(write_recipe, cli, tmp_path):
    images = make_image_folder(tmp_path / "images", per_class=2)
    for name, says in (("timm:resnet1888", "timm has no model 'resnet1888'.*did you mean"),
                       ("timm:resnet18.no_such_tag", "timm:resnet18.no_such_tag: .*list_pretrained")):
        recipe = write_recipe(tiny_recipe(images, backbone={"name": name, "weights": "none"}), "bad.yaml")
        assert_refused(cli("inspect", recipe), says)


def test_listing_plugins_and_backbones_never_imports_the_libraries(tmp_path):
    code = ("import sys; from tl_core.plugins import registry, plugins; plugins(); registry('backbone'); "
            "print([m for m in ('timm', 'torchvision', 'transformers', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_hub_weights_offline_are_one_line_naming_the_file(write_recipe, cli, tmp_path):
    images = make_image_folder(tmp_path / "images", per_class=2)
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "timm:resnet18", "weights": "default"}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "run"),
                   "cannot fetch model.safetensors from the Hugging Face hub repo timm/resnet18.a1_in1k.*"
                   "set backbone.weights to the local file", tmp_path / "run")


def tiny_hf_folder(folder, kind: str = "vit", weights: bool = False):
    """A transformers vision encoder built from a tiny config, saved as a hub repo would hold it (config.json, the
    image processor, optionally model.safetensors of a classifier checkpoint, whose ``vit.`` prefix and classifier
    a backbone must lose)."""
    import transformers as tf

    if kind == "vit":
        config = tf.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              image_size=32, patch_size=8, num_labels=5)
        processor = tf.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3)
        model = tf.ViTForImageClassification(config)
    else:
        config = tf.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])
        processor = tf.ConvNextImageProcessor(size={"shortest_edge": 32})
        model = tf.ConvNextModel(config)
    config.save_pretrained(folder)
    processor.save_pretrained(folder)
    if weights:
        model.save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("name", ["timm:resnet18", "torchvision:resnet18", "hf"])
def test_the_shipped_fine_tune_recipe_trains_one_tiny_epoch_on_each_library(name, cli, tmp_path):
    """The issue's test: ``vision/fine-tune`` on a timm, a torchvision and a Hugging Face backbone built from
    config."""
    images = make_image_folder(tmp_path / "images", per_class=5, size=40)  # 12 training images: batches of 4
    if name == "hf":
        name = f"hf:{tiny_hf_folder(tmp_path / 'vit')[0]}"
    code, _, err = cli("run", "vision/fine-tune", "--out", tmp_path / "run", "--quiet",
                       "--set", f"backbone.name={name}", "--set", "backbone.weights=none",
                       "--set", f"data.path={images}", "--set", "data.image_size=32", "--set", "train.epochs=1",
                       "--set", "train.batch_size=4")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["recipe"]["backbone"]["name"] == name and report["parameters"]["trainable"] > 0
    assert 0.0 <= report["metrics"]["val"]["accuracy"] <= 1.0


def test_torchvision_names_carry_the_weights_enum_and_the_stages():
    import torchvision.models as models

    from tl_core.plugins import registry

    spec = registry("backbone").get("torchvision:resnet50")
    enum = models.get_model_weights("resnet50")
    assert [e.name for e in spec.weights] == ["DEFAULT", *(w.name for w in enum)]
    default = spec.weights_entry("DEFAULT")
    assert default.location == enum.DEFAULT.url and enum.DEFAULT.url.endswith(f"-{default.sha256}.pth")
    assert spec.weights_entry("IMAGENET1K_V1").source_accuracy == enum.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"][
        "acc@1"]
    transform = enum.DEFAULT.transforms()  # resize 232, crop 224, bilinear
    assert (spec.input.size, spec.input.crop_pct) == (224, pytest.approx(224 / 232))
    assert spec.input.interpolation == transform.interpolation.value and spec.input.mean == tuple(transform.mean)
    assert [g.name for g in spec.layer_groups] == ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert spec.layer_groups[1].prefixes == ("layer1",) and default.classifier == ("fc",)
    for name in ("efficientnet_b0", "vit_b_16", "swin_t"):  # a features stack, a class token and encoder, a Swin
        spec = registry("backbone").get(f"torchvision:{name}")
        model = spec.factory()
        owners = {n: sum(g.owns(n) for g in spec.layer_groups) for n, _ in model.named_parameters()}
        assert set(owners.values()) == {1}, name
        assert len(spec.layer_groups) >= 5, name


def test_a_torchvision_file_is_held_to_torchvisions_hash_prefix(write_recipe, cli, tmp_path):
    """A file named as torchvision publishes it (resnet18-f37072fd.pth) is that file or nothing: one of other
    content is refused by the hash prefix in its name; offline, the download names the file to fetch."""
    import torch
    import torchvision

    images = make_image_folder(tmp_path / "images", per_class=2)
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "torchvision:resnet18", "weights": "IMAGENET1K_V1"}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "run"), "cannot download https://download.pytorch.org/models/resnet18-f37072fd.pth"
                   ".*backbone.weights=/path/to/resnet18-f37072fd.pth")
    fake = tmp_path / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), fake)  # a file as torchvision's, fc and all
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "torchvision:resnet18", "weights": str(fake)}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "run"), "has sha256 .*expected f37072fd", tmp_path / "run")
    other = tmp_path / "mine.pth"  # the user's own file: mapped like the entry, its digest recorded
    fake.rename(other)
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "torchvision:resnet18", "weights": str(other)},
                                      train={"epochs": 1, "batch_size": 3}, data={"image_size": 32}))
    code, _, err = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    from tl_core.weights import sha256_of

    assert report["weights"]["sha256_actual"] == sha256_of(other)
    assert report["load_report"]["dropped"] == ["fc.weight", "fc.bias"]


def test_a_pinned_sha256_refuses_another_file(write_recipe, cli, tmp_path):
    import torch

    from tl_core.plugins import registry
    from tl_core.weights import sha256_of

    images = make_image_folder(tmp_path / "images", per_class=2)
    mine = tmp_path / "mine.pth"
    torch.save(registry("backbone").get("torchvision:resnet18").factory().state_dict(), mine)
    wrong = "0" * 64
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "torchvision:resnet18", "weights": str(mine),
                                                        "sha256": wrong}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "bad"), f"has sha256 {sha256_of(mine)[:16]}.*expected "
                   f"{wrong[:16]}", tmp_path / "bad")
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "torchvision:resnet18", "weights": str(mine),
                                                        "sha256": sha256_of(mine)[:12].upper()},
                                      train={"epochs": 1, "batch_size": 3}, data={"image_size": 32}))
    code, _, err = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "torchvision:resnet18", "weights": "DEFAULT",
                                                        "revision": "abc123"}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "rev"), "backbone.revision pins a Hugging Face hub file, but "
                   "weights DEFAULT", tmp_path / "rev")


def test_a_pinned_revision_reaches_the_hub_download(monkeypatch):
    """``backbone.revision`` (timm:) and ``hf:ID@REV`` reach hf_hub_download as its revision."""
    from tl_core import weights
    from tl_core.model import pinned
    from tl_core.plugins import registry

    asked = {}

    def download(repo, filename, revision=None):
        asked.update(repo=repo, filename=filename, revision=revision)
        raise OSError("offline")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    entry = pinned(registry("backbone").get("timm:resnet18").weights[0], revision="0123abcd")
    with pytest.raises(weights.WeightsError, match="resnet18.a1_in1k"):
        weights.fetch(entry)
    assert asked == {"repo": "timm/resnet18.a1_in1k", "filename": "model.safetensors", "revision": "0123abcd"}


def test_an_hf_vision_encoder_from_a_folder_loads_its_weights_by_transformers_own_names(tmp_path):
    """A classifier checkpoint's encoder loads whole into the backbone (transformers renames tensors between its
    files and its modules, and strips ``vit.``), its classifier left out; the preprocessing is the image
    processor's; the groups are the embeddings, each layer, the final norm."""
    import torch

    from tl_core.model import build_backbone
    from tl_core.plugins import registry

    folder, source = tiny_hf_folder(tmp_path / "vit", weights=True)
    spec = registry("backbone").get(f"hf:{folder}")
    assert spec.feature_dim == 32 and spec.input.size == 32 and spec.input.interpolation == "bicubic"
    assert spec.input.mean == (0.5, 0.5, 0.5)
    assert [g.prefixes for g in spec.layer_groups] == [("embeddings",), ("layers.0",), ("layers.1",), ("layernorm",)]
    built = build_backbone(spec, "default")
    assert not built.report.missing and not built.report.reinitialised and len(built.report.loaded) > 30
    theirs = source.vit.state_dict()
    for key, value in built.module.state_dict().items():
        assert torch.equal(value, theirs[key]), key
    source.eval()
    built.module.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        cls_token = source.vit(pixel_values=x).last_hidden_state[:, 0]  # what ViTForImageClassification reads
        assert torch.allclose(built.module(x), cls_token, atol=1e-6)


def test_hf_names_that_are_not_image_encoders_are_one_line(write_recipe, cli, tmp_path):
    import transformers as tf

    images = make_image_folder(tmp_path / "images", per_class=2)
    tf.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32).save_pretrained(tmp_path / "bert")
    tf.GPT2Config(n_embd=32, n_layer=1, n_head=2).save_pretrained(tmp_path / "gpt2")
    for name, says in ((f"hf:{tmp_path / 'bert'}", "is a bert text encoder.*bert2bert"),
                       (f"hf:{tmp_path / 'gpt2'}", "is a gpt2 model, neither a vision nor a text encoder"),
                       (f"hf:{tmp_path / 'absent'}", "the folder .*absent does not exist"),
                       ("hf:facebook/dinov2-small", "cannot read its config.*huggingface-cli download "
                                                    "facebook/dinov2-small"),
                       ("torchvision:resnet1888", "torchvision has no classification model 'resnet1888'.*did you "
                                                  "mean.*resnet18"),
                       ("torchvision:squeezenet1_0", "ends in no linear classifier"),
                       ("torchvision:maskrcnn_resnet50_fpn", "is not an image classifier")):
        recipe = write_recipe(tiny_recipe(images, backbone={"name": name, "weights": "none"}), "bad.yaml")
        assert_refused(cli("inspect", recipe), says)
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "torchvision:resnet18", "weights": "IMAGENET9"}))
    assert_refused(cli("inspect", recipe), "no weights entry 'IMAGENET9'.*known: DEFAULT, IMAGENET1K_V1")


def test_search_lists_timm_and_torchvision_models_with_weights_and_licence(cli):
    code, out, err = cli("backbones", "--search", "convnext_nano", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["timm:convnext_nano.in12k_ft_in1k"]["licence"] == "apache-2.0"
    assert rows["timm:convnext_nano.in12k_ft_in1k"]["pretrained"] is True
    code, out, _ = cli("backbones", "--search", "resnet18", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["torchvision:resnet18"]["weights"] == ["DEFAULT", "IMAGENET1K_V1"]
    assert "resnet18" in rows and rows["resnet18"]["library"].startswith("tl")  # tl's own registered ones too
    assert_refused(cli("backbones", "--search", "zzqqx"), "no backbone of tl, timm or torchvision has 'zzqqx'")


def test_the_feature_cache_and_every_policy_work_on_a_prefixed_backbone(write_recipe, cli, tmp_path):
    """feature-extraction on torchvision:resnet18 caches its features (the second run reads them back), and each
    freeze policy plans over its stage groups in tl inspect."""
    images = make_image_folder(tmp_path / "images", per_class=4, size=32)
    base = dict(backbone={"name": "torchvision:mobilenet_v3_small", "weights": "none"},
                train={"epochs": 1, "batch_size": 3}, data={"image_size": 32})
    recipe = write_recipe(tiny_recipe(images, policy={"name": "feature-extraction"}, **base))
    for run in ("first", "second"):
        code, _, err = cli("run", recipe, "--out", tmp_path / run, "--quiet")
        assert code == 0, err
    second = json.loads((tmp_path / "second" / "report.json").read_text())
    assert second["feature_cache"]["used"] is True and second["feature_cache"]["hits"]["train"] is True
    for policy in ({"name": "freeze-first", "groups": 3}, {"name": "gradual-unfreeze", "every": 1},
                   {"name": "fine-tune", "layer_decay": 0.5}):
        recipe = write_recipe(tiny_recipe(images, policy=policy, **base), "policy.yaml")
        code, out, err = cli("inspect", recipe, "--json")
        assert code == 0, err
        rows = json.loads(out)[:-1]  # the stem-first groups; the last row is the head
        assert rows[0]["group"] == "stage1" and len(rows) == 14
        if policy["name"] == "freeze-first":
            assert [r["trainable"] for r in rows[:4]] == [False, False, False, True]
        if policy["name"] == "fine-tune":
            assert rows[0]["lr"] < rows[-1]["lr"]


def test_a_size_the_backbone_cannot_take_is_one_line_before_anything_is_written(write_recipe, cli, tmp_path):
    """torchvision's ViT takes 224 px only: asked for 64 px, the run stops in one line naming the size it takes.
    A transformers ViT interpolates its position embeddings, as its classifier can: it takes another size."""
    images = make_image_folder(tmp_path / "images", per_class=4, size=48)
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "torchvision:vit_b_16", "weights": "none"},
                                      data={"image_size": 64}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "run"),
                   "backbone 'torchvision:vit_b_16' cannot take 64x64 images .*set data.image_size to its own "
                   "size, 224", tmp_path / "run")
    folder = tiny_hf_folder(tmp_path / "vit")[0]  # a 32 px ViT, trained at 48 px
    recipe = write_recipe(tiny_recipe(images, backbone={"name": f"hf:{folder}", "weights": "none"},
                                      train={"epochs": 1, "batch_size": 3}, data={"image_size": 48}))
    code, _, err = cli("run", recipe, "--out", tmp_path / "hf", "--quiet")
    assert code == 0, err


def test_torchvision_vits_are_built_for_their_weights_size_and_inception_remaps_its_input():
    """A torchvision ViT is built at its DEFAULT weights' size (vit_h_14: SWAG at 518), and only entries of that size
    are offered (their position embeddings fit); GoogLeNet and Inception v3 remap ImageNet-normalised input to the
    [-1, 1] their ported weights expect, as torchvision does when it loads them."""
    import torchvision.models as models

    from tl_core.plugins import registry

    for name in ("vit_b_16", "vit_h_14"):
        spec = registry("backbone").get(f"torchvision:{name}")
        size = spec.factory().image_size
        assert size == models.get_model_weights(name).DEFAULT.meta["min_size"][0] == spec.input.size
        assert {e.input_size for e in spec.weights} == {size}
    assert "IMAGENET1K_SWAG_E2E_V1" not in [e.name for e in registry("backbone").get("torchvision:vit_b_16").weights]
    for name in ("googlenet", "inception_v3"):
        assert registry("backbone").get(f"torchvision:{name}").factory().transform_input is True


def test_an_hf_file_is_loaded_as_given_and_hf_pins_are_in_the_name(tmp_path, monkeypatch):
    """A user's own file beside the model's config.json is the file that loads (not the folder's model.safetensors);
    a revision of an hf: backbone goes in its name, backbone.revision says so; without transformers, one line."""
    import torch
    from safetensors.torch import save_file

    from tl_core.errors import RegistryError, WeightsError
    from tl_core.model import build_backbone
    from tl_core.plugins import registry

    folder, source = tiny_hf_folder(tmp_path / "vit", weights=True)
    spec = registry("backbone").get(f"hf:{folder}")
    other = {k: v + 1.0 for k, v in spec.factory().state_dict().items()}  # the model's own names, other values
    save_file(other, str(folder / "mine.safetensors"))
    built = build_backbone(spec, str(folder / "mine.safetensors"))
    assert all(torch.equal(v, other[k]) for k, v in built.module.state_dict().items())
    with pytest.raises(WeightsError, match=r"an hf: backbone takes its revision in its name.*hf:.*vit@abc123"):
        build_backbone(spec, "default", revision="abc123")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(RegistryError, match=r"hf: backbones are built by transformers, which is not installed"):
        registry("backbone").get(f"hf:{tmp_path}/elsewhere@v1")


def test_an_hf_model_that_takes_images_but_is_no_image_encoder_is_one_line(write_recipe, cli, tmp_path):
    import transformers as tf

    images = make_image_folder(tmp_path / "images", per_class=2)
    tf.VideoMAEConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32,
                      patch_size=8, num_frames=2, tubelet_size=2).save_pretrained(tmp_path / "video")
    recipe = write_recipe(tiny_recipe(images, backbone={"name": f"hf:{tmp_path / 'video'}", "weights": "none"}))
    assert_refused(cli("inspect", recipe), "is a videomae model that takes images but is no image classifier's encoder")
