"""A run's model card (``RUN/README.md``), made from its ``report.json`` alone, in the Hugging Face hub's
conventions: YAML front matter (``license``, ``base_model``, ``pipeline_tag``, ``tags`` and the metrics as a
``model-index``), written and read back through ``huggingface_hub``'s ``ModelCard`` and ``ModelCardData``, then a
body a person reads: the weights, the data, the metrics with the transfer-vs-scratch verdict, the recipe, the
intended use and the limits.

The front matter is what the hub indexes, so tl writes only what the report knows: a licence the hub has an id for
(otherwise ``license: other`` with the report's words as ``license_name``), a ``base_model`` only where the weights
came from the hub (a torchvision URL or a package file has no hub id), and the splits' metrics as the run measured
them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tl_core.files import write_atomic
from tl_core.report import summary_notes

#: the hub's licence ids for the licences tl's weights entries name (the hub's list is longer; anything else is
#: ``license: other``, with the entry's own words as ``license_name``)
LICENCES = {"apache-2.0": "apache-2.0", "apache 2.0": "apache-2.0", "mit": "mit", "bsd-3-clause": "bsd-3-clause",
            "bsd 3-clause": "bsd-3-clause", "cc-by-4.0": "cc-by-4.0", "cc-by-nc-4.0": "cc-by-nc-4.0",
            "cc-by-sa-4.0": "cc-by-sa-4.0", "gpl-3.0": "gpl-3.0", "llama2": "llama2", "openrail": "openrail"}
#: tl's tasks as the hub's pipeline tags
PIPELINES = {"image-classification": "image-classification", "medical-classification": "image-classification",
             "medical-segmentation": "image-segmentation", "object-detection": "object-detection",
             "translation": "translation"}


def _licence(text: str | None) -> dict[str, str]:
    """``{"license": id}`` for a licence the hub knows (its first words: ``"BSD-3-Clause (torchvision)"``), else
    ``license: other`` with the words as the name; no licence known: ``other`` too, said so."""
    if not text:
        return {"license": "other", "license_name": "unknown (random init or a local file: see the recipe)"}
    head = text.split("(")[0].split(";")[0].strip().lower()
    if head in LICENCES:
        return {"license": LICENCES[head]}
    return {"license": "other", "license_name": text[:200]}


def _base_model(weights: dict[str, Any] | None) -> str | None:
    """The hub id the weights came from, where they came from the hub (``owner/repo``)."""
    if not weights or weights.get("source") != "hf":
        return None
    parts = str(weights.get("location", "")).split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 and all(parts[:2]) else None


def _unmeasured(name: str, value: Any) -> bool:
    """COCO's -1: an AP or AR of a class the split holds no object of (pycocotools' sentinel, not a score)."""
    return name.startswith(("ap", "map", "mar")) and value == -1


def card_data(report: dict[str, Any]) -> Any:
    """The front matter as ``huggingface_hub.ModelCardData``: licence, base model, task, tags, and one
    ``EvalResult`` per metric of the test split (the validation split where there is no test split)."""
    from huggingface_hub import EvalResult, ModelCardData

    recipe = report["recipe"]
    task = recipe["task"]
    weights = report.get("weights")
    metrics = report.get("metrics", {})
    split = "test" if metrics.get("test") else "val"
    # the data folder's name, not its path: a card is for others to read (and the hub to show)
    dataset = Path(str(recipe.get("data", {}).get("path") or "local data")).name
    pipeline = PIPELINES.get(task)
    results = [EvalResult(task_type=pipeline or task, dataset_type="local", dataset_name=f"{dataset} ({split})",
                          dataset_split=split, metric_type=name, metric_value=float(value))
               for name, value in sorted(metrics.get(split, {}).items()) if not _unmeasured(name, value)]
    return ModelCardData(
        model_name=f"tl {task}: {recipe['backbone']['name']}", base_model=_base_model(weights),
        pipeline_tag=pipeline, library_name="tl", tags=["tl", "transfer-learning", task, recipe["policy"]["name"]],
        eval_results=results or None, **_licence((weights or {}).get("licence")),
    )


def _table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def model_card(report: dict[str, Any]) -> str:
    """``RUN/README.md`` for the run whose ``report.json`` is ``report``: the front matter (:func:`card_data`)
    and the body."""
    from huggingface_hub import ModelCard

    recipe = report["recipe"]
    weights = report.get("weights")
    metrics = report.get("metrics", {})
    scratch = (report.get("scratch") or {}).get("metrics", {})
    names = sorted({m for split in metrics.values() for m in split})
    def cells(values: dict[str, Any]) -> list[str]:
        return ["n/a" if _unmeasured(m, values.get(m)) else _number(values.get(m, "")) for m in names]

    rows = [["split", *names]] + [[split, *cells(v)] for split, v in metrics.items()]
    rows += [[f"{split} (from scratch)", *cells(v)] for split, v in scratch.items()]
    if weights:
        source = (f"`{weights.get('name')}` of `{weights.get('architecture')}`: {weights.get('description') or ''}"
                  f"\n- source: {weights.get('source')} `{weights.get('location')}`"
                  f"\n- licence: {weights.get('licence')}"
                  f"\n- trained on: {weights.get('training_data') or 'not stated'}"
                  f"\n- sha256 of the file used: `{weights.get('sha256_actual') or 'not recorded'}`")
    else:
        source = "none: the backbone was trained from random initialisation"
    data = "\n".join(f"- {key}: {_number(value) if not isinstance(value, (dict, list)) else value}"
                     for key, value in report.get("data", {}).items() if key not in ("skipped",))
    verdict = (report.get("verdict") or {}).get("message") or "no verdict recorded"
    notes = "\n".join(f"- {line}" for line in summary_notes(report)) or "- none"
    flagged = [w for w in (report.get("watches") or []) if isinstance(w, dict) and w.get("flagged")]
    limits = "\n".join(f"- {w.get('message')}" for w in flagged)
    body = f"""
# {recipe['task']} with `{recipe['backbone']['name']}` ({recipe['policy']['name']})

Trained with tl, the transfer-learning toolkit, from the recipe below. Everything here
comes from the run's `report.json`.

## Transfer or scratch

{verdict}

## Metrics

{_table(rows)}

{notes}

## Pre-trained weights

{source}

## Data

{data}

## Recipe

```yaml
{yaml.safe_dump(recipe, sort_keys=False).rstrip()}
```

## Intended use and limits

- Intended for data like the training data above: its classes, its domain, its acquisition. The metrics were
  measured on {'the test split' if metrics.get('test') else 'the validation split'} of that data only; they say
  nothing of other sites, devices or populations.
- A small data set gives wide intervals: read the verdict's confidence before trusting a difference.
- This card does not replace a clinical, safety or fairness assessment where the task needs one.
{limits}
"""
    card = ModelCard(f"---\n{card_data(report).to_yaml()}\n---\n{body}")
    return str(card)


def write_card(path: Path, report: dict[str, Any]) -> None:
    """Write :func:`model_card` of ``report`` to ``path`` atomically; the report as ``report.json`` holds it (JSON's
    lists, not a run's tuples and paths)."""
    plain = json.loads(json.dumps(report, default=str))
    write_atomic(path, model_card(plain))
