"""The plugin manager: built-ins, entry points, allow/block lists, failure isolation; and the registries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tl_core import plugins
from tl_core.errors import RegistryError
from tl_core.registry import Registry


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install (on sys.path) a distribution ``tl-fake`` whose entry points in group ``tl`` are given modules."""

    def make(modules: dict[str, str], allow: str | None = None) -> None:
        """``allow``: the TL_PLUGINS allow-list; by default exactly the fake plugins."""
        monkeypatch.setenv("TL_PLUGINS", ",".join(modules) if allow is None else allow)
        info = tmp_path / "tl_fake-0.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tl-fake\nVersion: 0.3\n")
        lines = [f"{name} = fake_{name}" for name in modules]
        (info / "entry_points.txt").write_text("[tl]\n" + "\n".join(lines) + "\n")
        for name, source in modules.items():
            (tmp_path / f"fake_{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))
        plugins.reset()

    yield make
    for name in list(sys.modules):
        if name.startswith("fake_"):
            del sys.modules[name]
    plugins.reset()


GOOD = """
    from tl_core import hookimpl
    from tl_core.components import HeadSpec

    @hookimpl
    def tl_register_heads(register):
        register(HeadSpec("fake-head", factory=lambda i, o: None, description="from the fake plugin"))
"""


def by_name() -> dict[str, plugins.PluginInfo]:
    return {p.name: p for p in plugins.plugins()}


def test_builtins_load_first_and_are_ordinary_plugins():
    infos = plugins.plugins()
    assert [p.name for p in infos[:2]] == list(plugins.BUILTIN_PLUGINS)
    assert all(p.builtin and p.status == "loaded" for p in infos[:2])
    assert "mobilenet_v2" in plugins.registry("backbone")


def test_entry_point_plugin_is_loaded_with_its_distribution(fake_dist):
    fake_dist({"good": GOOD})
    info = by_name()["good"]
    assert (info.status, info.distribution, info.version) == ("loaded", "tl-fake", "0.3")
    assert plugins.registry("head").owner("fake-head") == "good"


def test_plugin_that_fails_to_import_is_recorded_and_others_work(fake_dist):
    fake_dist({"good": GOOD, "broken": "import no_such_module_anywhere\n"})
    infos = by_name()
    assert infos["broken"].status == "failed"
    assert "Error importing plugin 'broken'" in infos["broken"].reason
    assert "no_such_module_anywhere" in infos["broken"].reason
    assert "fake-head" in plugins.registry("head")


def test_plugin_that_raises_in_a_registration_hook_is_recorded(fake_dist, capsys):
    fake_dist({"good": GOOD, "raiser": """
        from tl_core import hookimpl
        from tl_core.components import HeadSpec

        @hookimpl
        def tl_register_heads(register):
            register(HeadSpec("half-registered", factory=None))
            raise RuntimeError("database unreachable")
    """})
    heads = plugins.registry("head")
    assert "fake-head" in heads and "linear" in heads
    assert "half-registered" not in heads  # nothing of a failed registration is kept
    info = by_name()["raiser"]
    assert info.status == "failed" and "database unreachable" in info.reason


def test_hookimpl_with_an_unknown_hook_name_is_caught_by_check_pending(fake_dist):
    fake_dist({"typo": """
        from tl_core import hookimpl

        @hookimpl
        def tl_register_backbone(register):  # missing "s"
            pass
    """})
    info = by_name()["typo"]
    assert info.status == "failed" and "tl_register_backbone" in info.reason


def test_duplicate_name_across_plugins_fails_the_second_plugin_only(fake_dist):
    fake_dist({"dup": """
        from tl_core import hookimpl
        from tl_core.components import HeadSpec

        @hookimpl
        def tl_register_heads(register):
            register(HeadSpec("linear", factory=None))
    """})
    heads = plugins.registry("head")
    assert heads.owner("linear") == "tl.classification"
    info = by_name()["dup"]
    assert info.status == "failed" and "registered twice" in info.reason


def test_allow_list_empty_means_no_entry_point_plugins(fake_dist, monkeypatch):
    fake_dist({"good": GOOD}, allow="")
    info = by_name()["good"]
    assert info.status == "disabled" and "TL_PLUGINS" in info.reason
    assert "fake-head" not in plugins.registry("head")
    assert "linear" in plugins.registry("head")  # built-ins always load


def test_a_plugin_kept_from_loading_can_be_registered_in_process_under_its_name(fake_dist, monkeypatch):
    """What docs/writing_plugins.md step 7 does: an installed plugin's tests switch its entry point off and
    register its module themselves."""
    import importlib

    fake_dist({"good": GOOD}, allow="")
    assert by_name()["good"].status == "disabled"
    plugins.register_plugin(importlib.import_module("fake_good"), "good")
    assert by_name()["good"].status == "loaded" and "fake-head" in plugins.registry("head")
    with pytest.raises(ValueError, match="already registered"):  # a loaded one is not replaced
        plugins.register_plugin(importlib.import_module("fake_good"), "good")
    plugins.unregister_plugin("good")
    assert "fake-head" not in plugins.registry("head")


def test_the_same_plugin_under_a_second_name_is_refused_and_the_first_stays(fake_dist):
    import importlib

    fake_dist({"good": GOOD})
    assert by_name()["good"].status == "loaded"
    plugins.register_plugin(importlib.import_module("fake_good"), "good-again")
    infos = by_name()
    assert infos["good-again"].status == "failed" and "already registered as 'good'" in infos["good-again"].reason
    assert infos["good"].status == "loaded" and plugins.registry("head").owner("fake-head") == "good"
    plugins.unregister_plugin("good-again")


def test_allow_list_and_block_list(fake_dist, monkeypatch):
    monkeypatch.setenv("TL_DISABLE_PLUGINS", "other")
    fake_dist({"good": GOOD, "other": GOOD.replace("fake-head", "other-head")}, allow="good,other")
    infos = by_name()
    assert infos["good"].status == "loaded"
    assert infos["other"].status == "disabled" and "TL_DISABLE_PLUGINS" in infos["other"].reason


def test_tl_plugins_json_lists_failures(fake_dist, cli):
    fake_dist({"broken": "raise ImportError('needs libfoo')\n"})
    code, stdout, _ = cli("plugins", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(stdout)}
    assert rows["broken"]["status"] == "failed" and "needs libfoo" in rows["broken"]["reason"]


def test_listing_commands_do_not_import_torch():
    code = (
        "import sys\n"
        "from tl_core.cli import app\n"
        "for cmd in ('plugins', 'backbones', 'heads', 'policies', 'recipes'):\n"
        "    try:\n"
        "        app([cmd, '--json'], standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'timm', 'accelerate') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout


def test_registry_duplicate_name_raises():
    reg: Registry[int] = Registry("backbone")
    reg.register("resnet18", 1, plugin="a")
    with pytest.raises(RegistryError, match="registered twice: by plugin 'a' and by 'b'"):
        reg.register("resnet18", 2, plugin="b")


def test_registry_unknown_name_suggests_close_matches():
    reg: Registry[int] = Registry("backbone")
    for n in ("resnet18", "resnet50", "convnext_tiny"):
        reg.register(n, 0)
    with pytest.raises(RegistryError, match=r"unknown backbone 'resnet19' \(did you mean 'resnet18'"):
        reg.get("resnet19")
    with pytest.raises(RegistryError, match="known: convnext_tiny, resnet18, resnet50"):
        reg.get("vit")
    assert reg.names() == ["convnext_tiny", "resnet18", "resnet50"]


def test_event_hook_that_raises_switches_its_plugin_off_and_the_run_goes_on(tiny_plugin, image_folder,
                                                                            write_recipe, cli, tmp_path, capsys):
    from conftest import tiny_recipe

    from tl_core import hookimpl

    class FlakyLogger:
        calls = 0

        @hookimpl
        def tl_on_epoch_end(self, ctx, epoch, metrics):
            FlakyLogger.calls += 1
            raise ConnectionError("alert service down")

        @hookimpl
        def tl_on_run_start(self, ctx):
            ctx.info["logger"] = {"url": "https://alerts.example"}  # ends up in the report

    plugins.register_plugin(FlakyLogger(), "flaky")
    try:
        recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 3}))
        code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
        assert code == 0, stderr
        assert "plugin 'flaky' switched off: tl_on_epoch_end raised ConnectionError: alert service down" in stderr
        assert FlakyLogger.calls == 1  # switched off after the first failure
        report = json.loads((tmp_path / "run" / "report.json").read_text())
        assert report["logger"] == {"url": "https://alerts.example"} and len(report["epochs"]) == 3
        assert by_name()["flaky"].status == "failed"
    finally:
        plugins.unregister_plugin("flaky")


def test_plugin_failing_a_registration_hook_is_switched_off_entirely(fake_dist):
    fake_dist({"half": """
        from tl_core import hookimpl
        from tl_core.components import HeadSpec

        @hookimpl
        def tl_register_heads(register):
            register(HeadSpec("half-head", factory=None))

        @hookimpl
        def tl_register_policies(register):
            raise RuntimeError("broken policies")
    """})
    assert "half-head" in plugins.registry("head")
    plugins.registry("policy")
    assert "half-head" not in plugins.registry("head")  # refilled without the switched-off plugin
    assert by_name()["half"].status == "failed"


def test_allow_list_naming_a_plugin_that_is_not_installed(fake_dist, monkeypatch):
    fake_dist({"good": GOOD}, allow="good,medcal")
    info = by_name()["medcal"]
    assert info.status == "missing" and "not installed" in info.reason


def test_a_plugin_outside_its_hook_api_range_is_skipped_with_the_reason(fake_dist, cli):
    from tl_core import HOOK_API_VERSION

    good = textwrap.dedent(GOOD)
    future = "TL_HOOK_API = '>=3'\n" + good.replace("fake-head", "future-head")
    fake_dist({"good": "TL_HOOK_API = '>=1.0,<2'\n" + good, "future": future, "garbled": "TL_HOOK_API = 'one'\n"})
    infos = by_name()
    assert infos["good"].status == "loaded" and "fake-head" in plugins.registry("head")
    assert infos["future"].status == "incompatible"
    assert infos["future"].reason == f"needs tl hook API >=3; this tl has {HOOK_API_VERSION} (upgrade the plugin or tl)"
    assert "future-head" not in plugins.registry("head")  # none of its hooks ran
    assert infos["garbled"].status == "incompatible" and "is not a version range" in infos["garbled"].reason
    code, stdout, _ = cli("plugins", "--json")
    rows = {r["name"]: r for r in json.loads(stdout)}
    assert code == 0 and rows["future"]["status"] == "incompatible"


def test_trace_plugins_prints_hook_calls_and_answers(monkeypatch, capsys):
    import torch

    monkeypatch.setenv("TL_TRACE_PLUGINS", "1")
    plugins.reset()
    try:
        plugins.load_plugins()
        plugins.pm.hook.tl_evaluate(task="image-classification", outputs=torch.eye(2), targets=torch.arange(2),
                                    class_names=["a", "b"])
        err = capsys.readouterr().err
        assert "tl trace: tl_evaluate(task='image-classification', outputs=tensor(" in err
        assert "tl trace: tl_evaluate answered [{'accuracy': 1.0" in err
    finally:
        monkeypatch.delenv("TL_TRACE_PLUGINS")
        plugins.reset()
    plugins.load_plugins()
    plugins.pm.hook.tl_evaluate(task="x", outputs=None, targets=None, class_names=[])
    assert "tl trace" not in capsys.readouterr().err  # reset() took the tracer off
