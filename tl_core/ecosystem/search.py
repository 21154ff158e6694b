"""``tl backbones --search``: the models of timm and torchvision whose names match, as backbone names."""

from __future__ import annotations

from typing import Any

from tl_core.ecosystem.torchvision_models import _classification_models


def search(term: str) -> list[dict[str, Any]]:
    """The models of timm and torchvision whose names contain ``term`` (case-insensitive), as backbone names: one row
    per timm pretrained tag (with its licence, as timm's ``pretrained_cfg`` states it) and per timm architecture
    without one, and one per torchvision classifier (its weights enum's tags; torchvision states a licence only for
    some weights). Imports timm and torchvision: only ``tl backbones --search`` calls it."""
    import timm
    import torchvision.models as models
    from timm.models import get_pretrained_cfg

    pattern = f"*{term.lower()}*"
    rows: list[dict[str, Any]] = []
    tagged = timm.list_pretrained(pattern)
    for name in tagged:
        cfg = get_pretrained_cfg(name)
        rows.append({"name": f"timm:{name}", "library": "timm", "pretrained": True,
                     "weights": [str(getattr(cfg, "tag", "") or "default")],
                     "licence": str(getattr(cfg, "license", None) or "not stated")})
    with_weights = {n.partition(".")[0] for n in tagged}
    rows += [{"name": f"timm:{n}", "library": "timm", "pretrained": False, "weights": [], "licence": "not stated"}
             for n in timm.list_models(pattern) if n not in with_weights]
    for name in _classification_models():
        if term.lower() in name.lower():
            enum = models.get_model_weights(name)
            licences = sorted({str(w.meta.get("license")) for w in enum if w.meta.get("license")})
            rows.append({"name": f"torchvision:{name}", "library": "torchvision", "pretrained": len(enum) > 0,
                         "weights": ["DEFAULT", *(w.name for w in enum)],
                         "licence": ", ".join(licences) or "not stated (torchvision's code: BSD-3-Clause)"})
    return sorted(rows, key=lambda r: (r["library"], r["name"]))
