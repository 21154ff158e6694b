"""The ``tl`` command line. Each command is thin: the work lives in the library.

Listing commands (plugins, backbones, heads, policies, recipes) never import torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tl_core.errors import RegistryError, TLError

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="tl",
    help="Transfer learning: a pre-trained backbone, a head and a freeze policy, on your small data set.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# the consoles are made on first use: a listing asked for --json prints plain JSON and never loads rich's console
out: Console | None = None
err: Console | None = None


def _out() -> Console:
    global out
    if out is None:
        from rich.console import Console

        out = Console()
    return out


def _err() -> Console:
    global err
    if err is None:
        from rich.console import Console

        err = Console(stderr=True)
    return err

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SetOpt = Annotated[list[str], typer.Option("--set", help="Override a recipe key: --set train.epochs=5 (repeatable).")]


def _emit(rows: list[dict[str, Any]], as_json: bool, title: str, columns: list[str]) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    show(table)


def show(table: Any, console: Console | None = None) -> None:
    """Print a table, or - where the terminal is too narrow for it and rich would cut a name short with "…" -
    each row as a block: the first cell on its own line, then ``column: value`` lines, so that every name and
    command stays whole and can be copied."""
    console = console or _out()
    with console.capture() as capture:
        console.print(table)
    if "…" not in capture.get():
        console.print(table)
        return
    columns = list(table.columns)
    cells = [[str(cell) for cell in column.cells] for column in columns]
    if table.title:
        console.print(f"[bold]{table.title}[/]", highlight=False)
    for i in range(len(cells[0]) if cells else 0):
        console.print(f"[bold]{cells[0][i]}[/]", highlight=False, soft_wrap=True)
        for column, values in zip(columns[1:], cells[1:]):
            if values[i] not in ("", "-"):
                console.print(f"  {column.header}: {values[i]}", highlight=False)
    if table.caption:
        console.print(str(table.caption), highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


@app.command()
def plugins(as_json: JsonOpt = False) -> None:
    """List plugins: built-in and installed, loaded or not (with the reason)."""
    from tl_core import HOOK_API_VERSION
    from tl_core.plugins import plugins as all_plugins

    rows = [p.as_dict() for p in all_plugins()]
    _emit(rows, as_json, f"plugins (tl hook API {HOOK_API_VERSION})",
          ["name", "distribution", "version", "status", "reason", "hooks"])


def _options(model: Any) -> dict[str, Any]:
    """A pydantic options model as listing rows show it: defaults, the required keys, what each key means."""
    fields = model.model_fields if model is not None else {}
    return {"options": {k: f.get_default(call_default_factory=True) for k, f in fields.items() if not f.is_required()},
            "required": [k for k, f in fields.items() if f.is_required()],
            "help": {k: f.description for k, f in fields.items() if f.description}}


def _option_cells(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        required = [f"{k} (required)" for k in r.pop("required")]
        r["options"] = required + [f"{k}={v}" for k, v in r["options"].items()]


@app.command()
def backbones(as_json: JsonOpt = False, search: Annotated[str | None, typer.Option(
        "--search", help="list the models of timm and torchvision whose names contain this (e.g. convnext), with "
                         "their weights and licence: each is a backbone.name (timm:NAME, torchvision:NAME)")] = None,
) -> None:
    """List backbones with their weights entries and layer groups (--json: every field of each)."""
    from dataclasses import asdict

    from tl_core.plugins import registry

    reg = registry("backbone")
    if search is not None:
        from tl_core.ecosystem.search import search as find

        needle = search.lower()
        found = [{"name": n, "library": f"tl ({reg.owner(n)})", "pretrained": bool(s.weights),
                  "weights": [w.name for w in s.weights], "licence": ", ".join(sorted({w.licence for w in s.weights}))
                  or "-"} for n, s in reg.items() if needle in n.lower()] + find(search)
        if not found:
            raise RegistryError(f"no backbone of tl, timm or torchvision has {search!r} in its name; try a shorter "
                                "part (e.g. --search vit); Hugging Face models are named hf:ID from the hub "
                                "(huggingface.co)")
        if not as_json:
            for row in found:
                row["weights"] = ", ".join(row["weights"][:4]) + (" ..." if len(row["weights"]) > 4 else "") or "none"
        _emit(found, as_json, f"backbones matching {search!r} ({len(found)})",
              ["name", "library", "pretrained", "weights", "licence"])
        return
    rows = [
        {
            "name": name,
            "plugin": reg.owner(name),
            "feature_dim": spec.feature_dim,
            "tasks": list(spec.tasks),
            "input": asdict(spec.input),
            "layer_groups": [g.name for g in spec.layer_groups],
            "prefixes": {g.name: list(g.prefixes) for g in spec.layer_groups},
            "weights": [w.as_dict() for w in spec.weights],
            "description": spec.description,
        }
        for name, spec in reg.items()
    ]
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        row["weights"] = [f"{w['name']} ({w['source']})" for w in row["weights"]]
    _emit(rows, False, "backbones", ["name", "plugin", "feature_dim", "weights", "layer_groups", "description"])


@app.command()
def heads(as_json: JsonOpt = False) -> None:
    """List task heads and their options."""
    from tl_core.plugins import registry

    reg = registry("head")
    rows = [{"name": n, "plugin": reg.owner(n), "tasks": list(h.tasks), "description": h.description,
             **_options(h.options)} for n, h in reg.items()]
    if not as_json:
        _option_cells(rows)
    _emit(rows, as_json, "heads", ["name", "plugin", "tasks", "options", "description"])


@app.command()
def policies(as_json: JsonOpt = False) -> None:
    """List freeze policies, what each does with BatchNorm, and their options."""
    from tl_core.plugins import registry

    reg = registry("policy")
    rows = [{"name": n, "plugin": reg.owner(n), "description": p.description, "batchnorm": p.batchnorm,
             **_options(p.Options)} for n, p in reg.items()]
    if not as_json:
        _option_cells(rows)
    _emit(rows, as_json, "freeze policies", ["name", "description", "batchnorm", "options"])


@app.command()
def formats(as_json: JsonOpt = False) -> None:
    """List data formats: the task each reads for, its data.options (with their defaults) and what it reads."""
    from tl_core.plugins import registry

    reg = registry("data format")
    rows = [{"name": n, "plugin": reg.owner(n), "task": f.task, "description": f.description,
             "evaluate": f.read_split is not None, "own_transforms": f.transforms is not None,
             **_options(f.options)} for n, f in reg.items()]
    if not as_json:
        _option_cells(rows)
    _emit(rows, as_json, "data formats", ["name", "plugin", "task", "options", "description"])


@app.command()
def recipes(as_json: JsonOpt = False) -> None:
    """List the recipes that plugins ship, as domain/name."""
    from tl_core.plugins import registry

    reg = registry("recipe")
    rows = [{"name": n, "plugin": reg.owner(n), "path": str(r.path), "description": r.description}
            for n, r in reg.items()]
    _emit(rows, as_json, "recipes", ["name", "plugin", "description"])


@app.command()
def inspect(
    recipe: Annotated[str, typer.Argument(help="A recipe file or a registered domain/name.")],
    set_: SetOpt = [],  # noqa: B006 - typer reads the default
    epoch: Annotated[int, typer.Option(help="Show the policy's plan at this epoch (1-based).")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Show, layer group by layer group, what the recipe's policy freezes, its BatchNorm mode and learning rate."""
    from tl_core.inspect import inspect_recipe
    from tl_core.recipe import load_recipe

    rows = inspect_recipe(load_recipe(recipe, set_), epoch)
    _emit(rows, as_json, f"{recipe} at epoch {epoch}",
          ["group", "prefixes", "parameters", "frozen", "trainable", "batchnorm", "lr"])
    if not as_json:
        total = sum(r["parameters"] for r in rows)
        trainable = sum(r["trainable_parameters"] for r in rows)
        _out().print(f"trainable {trainable:,} / {total:,} parameters ({total - trainable:,} frozen)")


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="A recipe file or a registered domain/name.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the report, curves, model, checkpoints.")],
    set_: SetOpt = [],  # noqa: B006
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars or epoch lines.")] = False,
    seeds: Annotated[int | None, typer.Option(help="Run the recipe under N seeds (train.seed, +1, ...), each in "
                                                  "OUT/seed-S/; report mean ± std and a paired comparison.")] = None,
) -> None:
    """Train a recipe; write report.json, metrics.csv, curves.png and the model into --out."""
    from tl_core.recipe import load_recipe
    from tl_core.report import summary_notes, summary_table
    from tl_core.run import execute

    try:
        loaded = load_recipe(recipe, set_)
        if seeds is not None:
            from tl_core.seeds import execute_seeds, seeds_notes, seeds_table

            summary = execute_seeds(loaded, out_dir, seeds, resume=resume, quiet=quiet, console=_err())
            show(seeds_table(summary))
            for line in seeds_notes(summary):
                _out().print(line, highlight=False, soft_wrap=True)
            _out().print(f"wrote {out_dir}/seeds.json and one run per seed in {out_dir}/seed-*/")
            return
        report = execute(loaded, out_dir, resume=resume, quiet=quiet, console=_err())
    except KeyboardInterrupt:
        import shlex

        again = " ".join(shlex.quote(str(a)) for a in
                         ["tl", "run", recipe, "--out", out_dir, *[x for a in set_ for x in ("--set", a)],
                          *(["--seeds", seeds] if seeds is not None else []), "--resume"])
        _err().print(f"interrupted; continue with: {again}", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(130) from None
    show(summary_table(report))
    for line in summary_notes(report):
        _out().print(line, highlight=False, soft_wrap=True)
    model = "model.safetensors" if (out_dir / "model.safetensors").is_file() else "model/"
    _out().print(f"wrote {out_dir}/report.json, metrics.csv, curves.png, {model}")


@app.command()
def diagnose(
    recipe: Annotated[str, typer.Argument(help="A recipe file or a registered domain/name.")],
    backbones_: Annotated[str, typer.Option("--backbones", help="Candidate backbones, comma-separated (default: the "
                                                                "recipe's).")] = "",
    set_: SetOpt = [],  # noqa: B006
    as_json: JsonOpt = False,
) -> None:
    """Before training: score candidate backbones on the recipe's data (k-NN, linear probe, LogME, H-score; their
    random-init twins; the shift from the weights' domain) and recommend a backbone and policy, or scratch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tl_core.diagnose import diagnose as run_diagnose
    from tl_core.recipe import load_recipe

    loaded = load_recipe(recipe, set_)
    names = [b.strip() for b in backbones_.split(",") if b.strip()] or None
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=_err(), transient=True)

    def reporter(label: str, total: int | None) -> Any:
        task = bar.add_task(f"features: {label}", total=total)
        return lambda n: bar.advance(task, n)

    with bar:
        result = run_diagnose(loaded, names, reporter)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    show_diagnosis(result, recipe)


def _score(scores: dict[str, Any], key: str) -> str:
    value = scores.get(key)
    if value is None:
        return "-"
    interval = scores.get(key.replace("accuracy", "interval"))
    return f"{value:.3f}" + (f" [{interval[0]:.2f}-{interval[1]:.2f}]" if interval else "")


def show_diagnosis(result: dict[str, Any], recipe: str) -> None:
    """``tl diagnose``'s table and recommendation, in words."""
    from rich.table import Table

    per_class = result["per_class"]
    counted = (f", {result['classes']} classes ({per_class['min']}-{per_class['max']} per class, chance "
               f"{result['chance']:.2f})" if per_class else "")
    table = Table(title=f"{recipe}: {result['items']} {result['unit']}{counted}")
    for column in ("rank", "backbone", "LogME", "LogME gain over random init", "prior", "k-NN", "probe",
                   "random-init k-NN / probe", "shift"):
        table.add_column(column)
    for c in result["candidates"]:
        s, r, gain, prior, moved = (c["scores"], c["random_init"]["scores"], c["transfer_gain"], c["prior"],
                                    c["shift"])
        first = c.get("first_probability")
        table.add_row(
            "-" if c["rank"] is None else f"{c['rank']}" + (f" ({first:.0%} first)" if first is not None else ""),
            f"{c['backbone']} ({c['weights']})",
            "-" if s.get("logme") is None else f"{s['logme']:.3f}",
            "-" if gain is None else f"{gain['value']:+.3f}" + ("" if gain["helps"] else
                                                                 " (worse)" if gain["worse"] else " (unclear)"),
            "-" if prior is None else f"{prior['source_accuracy']:g}%" + (f" {prior['on']}" if prior["on"] else ""),
            _score(s, "knn_accuracy"), _score(s, "probe_accuracy"),
            f"{_score(r, 'knn_accuracy').split(' ')[0]} / {_score(r, 'probe_accuracy').split(' ')[0]}"
            if "knn_accuracy" in r else "-",
            "not measured" if moved is None else ("detected" if moved["detected"] else "none") +
            f" (p={moved['p_value']:.3f})",
        )
    show(table)
    for c in result["candidates"]:
        for note in [*c["scores"].get("notes", []), *c["random_init"]["scores"].get("notes", [])][:2]:
            _out().print(f"{c['backbone']}: {note}", highlight=False, soft_wrap=True)
        if c["shift"]:
            _out().print(f"{c['backbone']}: {c['shift']['plain']}", highlight=False, soft_wrap=True)
    advice = result["recommendation"]
    if advice["policy"] is None:
        _out().print(f"no recommendation: {advice['why'][0]}", highlight=False, soft_wrap=True)
        return
    _out().print(f"[bold]recommendation[/] ({advice['confidence']} confidence): {advice['policy']} with "
                 f"{advice['backbone']}", highlight=False, soft_wrap=True)
    for line in advice["why"]:
        _out().print(f"  - {line}", highlight=False, soft_wrap=True)
    sets = " ".join(f"--set {s}" for s in advice["set"])
    _out().print(f"  try: tl run {recipe} --out RUN {sets} --set compare.scratch=true", highlight=False,
                 soft_wrap=True)
    _out().print("  how these are decided: tl diagnose --json (rules); docs/user_guide.md, \"Should I transfer?\"",
                 highlight=False, soft_wrap=True)


@app.command()
def curve(
    recipe: Annotated[str, typer.Argument(help="A recipe file or a registered domain/name.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for curve.json, curve.png and one run per point.")],
    shots: Annotated[str, typer.Option(help="Training examples per class at each point (a plugin's data may count "
                                            "pairs or images), comma-separated; 'all' is the whole split.")]
    = "1,2,5,10,all",
    set_: SetOpt = [],  # noqa: B006
    resume: Annotated[bool, typer.Option(help="Continue: finished points are read, not trained again.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars or epoch lines.")] = False,
) -> None:
    """Train transfer and scratch on growing numbers of labelled examples, same epochs per point; write
    OUT/curve.json and OUT/curve.png."""
    from rich.table import Table

    from tl_core.curve import execute_curve, parse_shots
    from tl_core.recipe import load_recipe

    summary = execute_curve(load_recipe(recipe, set_), out_dir, parse_shots(shots), resume=resume, quiet=quiet,
                            console=_err())
    table = Table(title=f"{recipe}: {summary['split']} {summary['metric']} against training examples "
                        f"({summary['epochs']} epochs per point)")
    for column in ("shots", "training examples", "transfer", "scratch", "difference"):
        table.add_column(column, justify="right")
    for point in summary["points"]:
        t, sc = point["transfer"], point["scratch"]
        table.add_row("all" if point["shots"] is None else str(point["shots"]), str(point["train_items"]),
                      "-" if t is None else f"{t:.4f}", "-" if sc is None else f"{sc:.4f}",
                      "-" if t is None or sc is None else f"{t - sc:+.4f}")
    show(table)
    capped = [f"{p['run']}: {', '.join(p['capped'])}" for p in summary["points"] if p["capped"]]
    if capped:
        _out().print("capped (fewer than asked): " + "; ".join(capped), highlight=False, soft_wrap=True)
    _out().print(f"wrote {out_dir}/curve.json, {out_dir}/curve.png and one run per point in {out_dir}/shots-*/")


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="The plugin's name (its entry point), e.g. birds.")],
    where: Annotated[Path, typer.Option("--dir", help="The folder to write tl-NAME into.")] = Path("."),
) -> None:
    """Write a complete plugin distribution tl-NAME (pyproject, package, recipe, README, tests) to start from."""
    from tl_core.scaffold import new_plugin as make

    target = make(name, where)
    _out().print(f"wrote {target}; next: pip install -e {target} && pytest {target}/tests "
              f"&& pytest --tl-conformance={name}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (from tl run --out).")],
    data: Annotated[str, typer.Option("--data", help="Data in the run's format (an image folder, a CSV, a TSV of "
                                                    "sentence pairs, ...).")],
    as_json: JsonOpt = False,
) -> None:
    """Score a finished run on new data; print the metrics and write them to RUN/evaluations/."""
    from tl_core.evaluate import evaluate_run

    result = evaluate_run(run_dir, data)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    rows = [{"metric": k, "value": f"{v:.4f}"} for k, v in result["metrics"].items()]
    _emit(rows, False, f"{run_dir} on {data} ({result['items']} {result.get('unit', 'items')}, "
                       f"{len(result.get('skipped', []))} skipped)", ["metric", "value"])


@app.command()
def card(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="Where to write it (default: RUN/README.md).")] = None,
) -> None:
    """Write the run's model card (RUN/README.md) from its report.json, in the Hugging Face hub's conventions:
    licence, base model, task and metrics as front matter; the weights, data, metrics, verdict, recipe and limits."""
    from tl_core.card import write_card
    from tl_core.report import read_report

    path = out or run_dir / "README.md"
    write_card(path, read_report(run_dir))
    _out().print(f"wrote {path}", highlight=False)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    as_json: JsonOpt = False,
) -> None:
    """Print a finished run's summary: metrics per split, transfer against scratch, the verdict (for a folder of
    seeded runs: mean ± std over the seeds)."""
    from tl_core.report import read_report, summary_notes, summary_table
    from tl_core.seeds import read_seeds, seeds_notes, seeds_table

    summary = read_seeds(run_dir)
    if summary is not None:
        if as_json:
            print(json.dumps(summary, indent=2))
            return
        show(seeds_table(summary))
        for line in seeds_notes(summary):
            _out().print(line, highlight=False, soft_wrap=True)
        return
    data = read_report(run_dir)
    if as_json:
        print(json.dumps({"metrics": data["metrics"], "scratch": (data.get("scratch") or {}).get("metrics"),
                          "verdict": data.get("verdict")}, indent=2))
        return
    show(summary_table(data))
    for line in summary_notes(data):
        _out().print(line, highlight=False, soft_wrap=True)
    load = data.get("load_report")
    if load:
        _out().print(f"weights {load['weights']} (sha256 {str(load['sha256'])[:12]}...): {len(load['loaded'])} tensors "
                  f"loaded, {len(load['dropped'])} dropped, {len(load['missing'])} missing")
    cache = data.get("feature_cache") or {}
    _out().print(f"best epoch {data['best_epoch']} of {len(data['epochs'])} by val {data['selection_metric']}; "
              f"feature cache: {'used' if cache.get('used') else 'not used (' + str(cache.get('reason')) + ')'}")


_plugin_commands_added = False


def _add_plugin_commands() -> None:
    global _plugin_commands_added
    if _plugin_commands_added:
        return
    _plugin_commands_added = True
    from tl_core.plugins import hook

    hook().tl_add_commands(cli=app)


def main() -> None:
    """Entry point: user errors become one line and exit code 2; bugs keep their traceback."""
    try:
        _add_plugin_commands()
        app()
    except TLError as exc:
        _err().print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
