"""The core's hostile-input corpus: files that are not UTF-8 or nest too deep, an --out that cannot hold a run or is
in use, a finished run whose files were truncated or tampered with, damaged checkpoints, and bad items in a data
set. A refused case ends in exit code 2, one ``error:`` line naming the problem and the fix, no traceback, and
``--out`` (or the run folder) as it was; a skipped item is named where the user looks (``report.json``, the
evaluation). The first 14 classic mistakes (unknown keys, wrong hashes, refused pickles, ...) are in
test_bad_input.py; docs/user_guide.md ("What tl refuses, skips and repairs") lists them all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_image_folder, tiny_recipe
from test_weights import Evil

from tl_core.testing import assert_refused, snapshot

LATIN1 = "# r\xe9glage fran\xe7ais\n".encode("latin-1")  # what a recipe saved by an old Windows editor holds


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_weights_file: Path) -> Path:
    """One finished 1-epoch run of the tiny backbone, written once; tests copy it before they damage it."""
    from conftest import tiny_spec

    from tl_core import hookimpl, plugins
    from tl_core.recipe import validate
    from tl_core.run import execute
    from tl_core.weights import WeightsEntry, sha256_of

    root = tmp_path_factory.mktemp("finished")
    images = make_image_folder(root / "images", per_class=6)
    entry = WeightsEntry(name="pretrained", architecture="tiny", source="file", location=str(tiny_weights_file),
                         sha256=sha256_of(tiny_weights_file), licence="test", mean=(0.5,) * 3, std=(0.5,) * 3,
                         input_size=16, classifier=("fc",))

    class Tiny:
        @hookimpl
        def tl_register_backbones(self, register):
            register(tiny_spec([entry]))

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TL_PLUGINS", "")
        mp.setenv("TL_CACHE_DIR", str(root / "cache"))
        plugins.reset()
        plugins.register_plugin(Tiny(), "tiny-test")
        try:
            execute(validate(tiny_recipe(images, train={"epochs": 1})), root / "run", quiet=True)
        finally:
            plugins.reset()
    return root / "run"


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    return target


# ---------------------------------------------------------------- recipes: encodings and nesting


def test_a_recipe_that_is_not_utf8(cli, tmp_path, image_folder, write_recipe):
    recipe = write_recipe(tiny_recipe(image_folder))
    recipe.write_bytes(LATIN1 + recipe.read_bytes())
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"),
                   r"recipe.yaml is not UTF-8 text \(byte 0xe9 on line 1\); save it as UTF-8", tmp_path / "out")


def test_a_recipe_it_extends_that_is_not_utf8(cli, tmp_path, image_folder, write_recipe):
    (tmp_path / "base.yaml").write_bytes(LATIN1)
    recipe = write_recipe({**tiny_recipe(image_folder), "extends": "base.yaml"})
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"), r"base.yaml is not UTF-8 text", tmp_path / "out")


def test_a_recipe_nested_past_what_yaml_can_read(cli, tmp_path):
    recipe = tmp_path / "deep.yaml"
    recipe.write_text("data: {options: {x: " + "[" * 20_000 + "]" * 20_000 + "}}\n")  # RecursionError in PyYAML
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"), r"deep.yaml: YAML nested too deeply to read",
                   tmp_path / "out")


def test_a_recipe_nested_deeper_than_any_recipe(cli, tmp_path, image_folder, write_recipe):
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["k"] = {}
        node = node["k"]
    recipe = write_recipe(tiny_recipe(image_folder, data={"options": deep}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"),
                   r"nested more than 32 levels deep \(at 'data.options.k.k.k", tmp_path / "out")


def test_a_recipe_of_yaml_aliases_that_expand_without_end(cli, tmp_path):
    """"Billion laughs": ten lines whose aliases repeat a list 9**10 times; checked in well under a second."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefghi", "bcdefghij"):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    recipe = tmp_path / "laughs.yaml"
    recipe.write_text("\n".join(lines) + "\n")
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"),
                   r"laughs.yaml: expands to more than 100000 values \(YAML aliases repeating a part\)",
                   tmp_path / "out")


def test_a_recipe_that_refers_to_itself(cli, tmp_path):
    recipe = tmp_path / "cycle.yaml"
    recipe.write_text("data: &a {options: [*a]}\n")
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"), r"cycle.yaml: nested more than 32 levels deep",
                   tmp_path / "out")


@pytest.mark.parametrize("text,pattern", [
    ("task: image\x00classification\n", r"not valid YAML at character 11: special characters are not allowed"),
    ("train:\n\tepochs: 3\n", r"not valid YAML at line 2: found character '\\t' .*; indent with spaces, not tabs"),
    ("train: {epochs: " + "9" * 5000 + "}\n", r"a value that cannot be read \(an integer of more than 4300 digits\)"),
], ids=["NUL byte", "tab", "5000-digit number"])
def test_a_recipe_yaml_cannot_read(cli, tmp_path, text, pattern):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"), r"bad.yaml: " + pattern, tmp_path / "out")


def test_a_set_value_nested_too_deeply(cli, tmp_path, image_folder, write_recipe):
    recipe = write_recipe(tiny_recipe(image_folder))
    assert_refused(cli("run", recipe, "--out", tmp_path / "out", "--set", "data.options.x=" + "[" * 20_000),
                   r"--set data.options.x: the value is nested too deeply to read", tmp_path / "out")


def test_a_set_path_is_taken_as_written(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    """YAML would read ``hf:`` as a mapping and give a type error; a weights name is a string as written."""
    recipe = write_recipe(tiny_recipe(image_folder))
    assert_refused(cli("run", recipe, "--out", tmp_path / "out", "--set", "backbone.weights=hf:"),
                   r"backbone 'tiny' has no weights entry 'hf:'; known: pretrained", tmp_path / "out")


# ---------------------------------------------------------------- data files


def write_csv(tmp_path: Path, images: Path, extra: bytes = b"") -> Path:
    rows = [f"{p.relative_to(images)},{p.parent.name}" for p in sorted(images.rglob("*.png"))]
    csv = images / "labels.csv"
    csv.write_bytes(("path,label\n" + "\n".join(rows) + "\n").encode() + extra)
    return csv


def test_an_image_csv_that_is_not_utf8(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    csv = write_csv(tmp_path, image_folder, "caf\xe9.png,class_0\n".encode("cp1252"))
    recipe = write_recipe(tiny_recipe(csv, data={"format": "image-csv"}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"),
                   r"labels.csv is not UTF-8 text \(byte 0xe9 on line 26\); save it as UTF-8", tmp_path / "out")


def test_an_image_csv_with_a_byte_order_mark_is_read(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    """Excel's "CSV UTF-8" starts with a byte-order mark; read as it was, the header's first name was
    '\\ufeffpath' and the CSV was refused."""
    csv = write_csv(tmp_path, image_folder)
    csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    code, _, stderr = cli("inspect", write_recipe(tiny_recipe(csv, data={"format": "image-csv"})))
    assert code == 0, stderr
    from tl_core.builtin.classification.images import read_image_csv

    assert len(read_image_csv(str(csv))) == 24


def test_a_class_folder_whose_name_is_not_utf8(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    import os

    os.rename(image_folder / "class_2", os.fsencode(image_folder) + b"/caf\xe9")  # a Latin-1 name on Linux
    assert_refused(cli("run", write_recipe(tiny_recipe(image_folder)), "--out", tmp_path / "out"),
                   r"the class folder 'caf\ufffd' has a name that is not UTF-8; rename it", tmp_path / "out")


def test_an_image_csv_with_a_field_past_the_csv_limit(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    csv = write_csv(tmp_path, image_folder, b'"' + b"x" * 200_000 + b'",class_0\n')
    recipe = write_recipe(tiny_recipe(csv, data={"format": "image-csv"}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"),
                   r"labels.csv, line 26: not a readable CSV row \(field larger than field limit.*; fix or remove it",
                   tmp_path / "out")


def test_an_undecodable_image_is_skipped_and_named_in_the_report(cli, tiny_plugin, tmp_path, image_folder,
                                                                 write_recipe):
    (image_folder / "class_1" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (image_folder / "class_2" / "notes.png").write_text("not an image")
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1}))
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "out", "--quiet")
    assert code == 0, stderr
    skipped = json.loads((tmp_path / "out" / "report.json").read_text())["data"]["skipped"]
    assert sorted(Path(line.split(":")[0]).name for line in skipped) == ["notes.png", "truncated.png"]


def test_an_undecodable_image_is_counted_by_tl_evaluate(cli, tiny_plugin, run_copy, tmp_path):
    data = make_image_folder(tmp_path / "new", per_class=2, seed=3)
    (data / "class_0" / "broken.png").write_bytes(b"GIF89a")
    code, stdout, stderr = cli("evaluate", run_copy, "--data", data)
    assert code == 0, stderr
    assert "6 images, 1 skipped" in stdout
    result = json.loads((run_copy / "evaluations" / "new.json").read_text())
    assert len(result["skipped"]) == 1 and "broken.png" in result["skipped"][0]


# ---------------------------------------------------------------- --out


def test_out_that_is_a_file(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    target = tmp_path / "taken"
    target.write_text("my notes")
    assert_refused(cli("run", write_recipe(tiny_recipe(image_folder)), "--out", target),
                   r"--out .*taken is a file, not a folder; choose a folder for the run")
    assert target.read_text() == "my notes"


def test_a_nested_out_that_fails_leaves_no_folder_and_an_out_inside_the_data_is_not_read(
        cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    out = tmp_path / "p1" / "p2" / "out"
    (tmp_path / "empty").mkdir()
    assert_refused(cli("run", write_recipe(tiny_recipe(tmp_path / "empty")), "--out", out), r"no class sub-folders")
    assert not (tmp_path / "p1").exists()  # every folder the run would have made is gone
    inside = image_folder / "runs" / "first"  # --out inside data.path: made after the data is read, not a class
    code, _, stderr = cli("run", write_recipe(tiny_recipe(image_folder, train={"epochs": 1})), "--out", inside,
                          "--quiet")
    assert code == 0, stderr


def test_out_that_is_a_dangling_link(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    assert_refused(cli("run", write_recipe(tiny_recipe(image_folder)), "--out", tmp_path / "link"),
                   r"--out .*link is a symbolic link to nothing; remove it, or choose another --out")


def test_out_under_a_file(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    (tmp_path / "taken").write_text("x")
    assert_refused(cli("run", write_recipe(tiny_recipe(image_folder)), "--out", tmp_path / "taken" / "run"),
                   r"taken is a file, so the folder cannot be made; choose another --out")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_out_in_a_folder_that_cannot_be_written(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    if os.geteuid() == 0:  # root writes through any mode bits; /proc refuses even root
        target, parent = Path("/proc/tl-hostile-run"), Path("/proc")
        if not parent.is_dir():
            pytest.skip("no /proc")
    else:
        parent = tmp_path / "read-only"
        parent.mkdir()
        parent.chmod(0o555)
        target = parent / "run"
    assert_refused(cli("run", write_recipe(tiny_recipe(image_folder)), "--out", target),
                   rf"--out {target}: cannot write in {parent} .*; choose a folder you can write to", target)


def test_a_second_run_on_a_folder_in_use_is_refused(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    from tl_core.files import RunLock

    out = tmp_path / "out"
    with RunLock(out):  # what a first `tl run` holds while it trains
        before = snapshot(out)
        assert_refused(cli("run", write_recipe(tiny_recipe(image_folder)), "--out", out),
                       r"out is in use by another tl run; wait for it to finish, or choose another --out", out, before)


def test_a_run_that_fails_before_writing_leaves_no_folder_or_lock(cli, tiny_plugin, tmp_path, write_recipe):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    assert_refused(cli("run", write_recipe(tiny_recipe(tmp_path / "empty")), "--out", out), r"no class sub-folders",
                   out)
    out.mkdir()  # a folder the user made for the run: kept, and no lock file left in it
    assert_refused(cli("run", write_recipe(tiny_recipe(tmp_path / "empty")), "--out", out), r"no class sub-folders",
                   out, {})
    assert list(out.iterdir()) == []


def test_a_run_in_another_process_holds_its_folder(cli, tiny_plugin, tmp_path, image_folder, write_recipe):
    import subprocess
    import sys

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from tl_core.files import RunLock; "
                               f"RunLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(out)
        assert_refused(cli("run", write_recipe(tiny_recipe(image_folder)), "--out", out),
                       r"is in use by another tl run", out, before)
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_does_not_block_its_resume(tmp_path):
    """flock dies with its process: a lock file a SIGKILLed run left behind is no lock."""
    import subprocess
    import sys

    from tl_core.files import RunLock

    out = tmp_path / "out"
    code = f"from tl_core.files import RunLock; import os; RunLock({str(out)!r}).acquire(); os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert (out / RunLock.NAME).exists()
    with RunLock(out):
        pass


# ---------------------------------------------------------------- a finished run, damaged


def test_tl_evaluate_with_a_truncated_model_file(cli, tiny_plugin, run_copy, image_folder):
    model = run_copy / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    before = snapshot(run_copy)
    assert_refused(cli("evaluate", run_copy, "--data", image_folder),
                   r"model.safetensors is damaged or is not a file tl wrote .*; restore it, or train again", run_copy,
                   before)


def test_tl_evaluate_with_a_model_file_of_another_model(cli, tiny_plugin, run_copy, image_folder):
    from safetensors.torch import load_file, save_file

    state = load_file(str(run_copy / "model.safetensors"))
    head = next(k for k in state if k.startswith("head") and k.endswith("weight"))
    state[head] = torch.zeros(5, state[head].shape[1])  # a model of 5 classes, not 3
    save_file(state, str(run_copy / "model.safetensors"))
    before = snapshot(run_copy)
    assert_refused(cli("evaluate", run_copy, "--data", image_folder),
                   rf"model.safetensors does not fit the model of the run's recipe \({head} is 5x16 where the model "
                   r"has 3x16\); it was changed or belongs to another run", run_copy, before)
    save_file({"w": torch.zeros(1)}, str(run_copy / "model.safetensors"))
    assert_refused(cli("evaluate", run_copy, "--data", image_folder),
                   r"recipe \(20 of its 20 tensors missing \(first backbone.features.0.0.weight\); 1 it does not have "
                   r"\(first w\)\)", run_copy, snapshot(run_copy))


def test_tl_evaluate_with_a_report_that_is_not_json(cli, tiny_plugin, run_copy, image_folder):
    (run_copy / "report.json").write_bytes(b'{"recipe": {"task": "image-classification",\xff')
    before = snapshot(run_copy)
    assert_refused(cli("evaluate", run_copy, "--data", image_folder), r"report.json is not UTF-8 text", run_copy,
                   before)
    (run_copy / "report.json").write_text('{"recipe": ')
    assert_refused(cli("report", run_copy), r"report.json: not valid JSON at line 1 column 12")


@pytest.mark.parametrize("content,pattern", [
    ("[]", r"a JSON list, not an object"),
    ('{"recipe": {}}', r"its recipe: backbone: Field required"),
    (None, r"'metrics' is not metrics by split"),
], ids=["a list", "an empty recipe", "no metrics"])
def test_tl_report_and_evaluate_with_a_report_that_is_not_a_tl_report(cli, tiny_plugin, run_copy, image_folder,
                                                                      content, pattern):
    report = run_copy / "report.json"
    if content is None:
        data = json.loads(report.read_text())
        del data["metrics"]
        content = json.dumps(data)
    report.write_text(content)
    before = snapshot(run_copy)
    assert_refused(cli("report", run_copy), r"report.json is not a tl report \(" + pattern)
    assert_refused(cli("evaluate", run_copy, "--data", image_folder), r"is not a tl report", run_copy, before)


def test_tl_evaluate_with_data_that_does_not_exist(cli, tiny_plugin, run_copy, tmp_path):
    assert_refused(cli("evaluate", run_copy, "--data", tmp_path / "nope"),
                   r"--data .*nope does not exist; give data in the run's format \(image-folder\)")


def test_resume_with_a_truncated_checkpoint(cli, tiny_plugin, run_copy, image_folder, write_recipe):
    (run_copy / "report.json").unlink()  # an unfinished run
    checkpoint = run_copy / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    before = snapshot(run_copy)
    recipe = write_recipe(json.loads((run_copy / "checkpoints" / "recipe.json").read_text()))  # the same recipe
    assert_refused(cli("run", recipe, "--out", run_copy, "--resume"),
                   r"--resume: .*last.pt is damaged or not a tl checkpoint .*start again without --resume", run_copy,
                   before)


def test_resume_with_a_checkpoint_that_carries_a_pickle(cli, tiny_plugin, run_copy, image_folder, write_recipe,
                                                        tmp_path):
    (run_copy / "report.json").unlink()
    torch.save({"epoch": 1, "model": {}, "optimizer": {}, "history": [], "x": Evil(f"touch {tmp_path / 'pwned'}")},
               run_copy / "checkpoints" / "last.pt")
    before = snapshot(run_copy)
    recipe = write_recipe(json.loads((run_copy / "checkpoints" / "recipe.json").read_text()))  # the same recipe
    assert_refused(cli("run", recipe, "--out", run_copy, "--resume"), r"last.pt is damaged or not a tl checkpoint",
                   run_copy, before)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("change,pattern", [
    (lambda c: c.pop("best"), r"'best' is missing, not a number"),
    (lambda c: c.update(epoch="x"), r"'epoch' is str, not int"),
    (lambda c: c.update(model=[1, 2]), r"'model' is list, not dict"),
    (lambda c: c["model"].update({"backbone.features.0.0.weight": 3}), r"the model's 'backbone.features.0.0.weight' "
                                                                        r"is not a tensor"),
], ids=["no best", "epoch a word", "model a list", "a tensor a number"])
def test_resume_with_a_checkpoint_whose_content_was_changed(cli, tiny_plugin, run_copy, write_recipe, change,
                                                             pattern):
    (run_copy / "report.json").unlink()
    checkpoint = run_copy / "checkpoints" / "last.pt"
    saved = torch.load(checkpoint, weights_only=True)
    change(saved)
    torch.save(saved, checkpoint)
    before = snapshot(run_copy)
    recipe = write_recipe(json.loads((run_copy / "checkpoints" / "recipe.json").read_text()))
    assert_refused(cli("run", recipe, "--out", run_copy, "--resume"),
                   r"last.pt is damaged or not a tl checkpoint \(" + pattern, run_copy, before)


def test_resume_with_a_saved_recipe_that_is_not_a_recipe(cli, tiny_plugin, run_copy, write_recipe):
    (run_copy / "report.json").unlink()
    recipe = write_recipe(json.loads((run_copy / "checkpoints" / "recipe.json").read_text()))
    (run_copy / "checkpoints" / "recipe.json").write_text("[1]")
    before = snapshot(run_copy)
    assert_refused(cli("run", recipe, "--out", run_copy, "--resume"), r"recipe.json is not a recipe", run_copy,
                   before)


def test_resume_with_a_checkpoint_of_another_model(cli, tiny_plugin, run_copy, image_folder, write_recipe):
    (run_copy / "report.json").unlink()
    checkpoint = run_copy / "checkpoints" / "last.pt"
    saved = torch.load(checkpoint, weights_only=True)
    saved["model"] = {"head.weight": torch.zeros(1)}
    torch.save(saved, checkpoint)
    before = snapshot(run_copy)
    recipe = write_recipe(json.loads((run_copy / "checkpoints" / "recipe.json").read_text()))  # the same recipe
    code, _, stderr = cli("run", recipe, "--out", run_copy, "--resume")
    # found when the model is built, so after the line that says how its weights loaded; the error is one line
    info, error = stderr.strip().splitlines()
    assert_refused((code, "", error), r"last.pt does not fit the model of the run's recipe", run_copy, before)
    assert info.startswith("weights pretrained: ")


def test_backbone_weights_that_are_a_truncated_safetensors_file(cli, tiny_plugin, tmp_path, image_folder,
                                                                write_recipe):
    bad = tmp_path / "tiny.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    recipe = write_recipe(tiny_recipe(image_folder, backbone={"weights": str(bad)}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "out"),
                   r"tiny.safetensors is not a readable safetensors file", tmp_path / "out")


def test_interrupt_prints_a_whole_command_to_continue_with(cli, tiny_plugin, tmp_path, image_folder, write_recipe,
                                                          monkeypatch):
    """Ctrl-C: the line to continue with is one line (not wrapped at the terminal's width) and repeats every --set."""
    from tl_core import run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "execute", interrupted)
    recipe = write_recipe(tiny_recipe(image_folder), name="a recipe named at length, " + "x" * 150 + ".yaml")
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "out", "--set", "train.lr=0.5", "--set",
                          "train.epochs=3")
    assert code == 130
    line = stderr.strip()
    assert "\n" not in line
    assert line.endswith(f"'{recipe}' --out {tmp_path / 'out'} --set train.lr=0.5 --set train.epochs=3 --resume")
