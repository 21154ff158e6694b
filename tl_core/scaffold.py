"""``tl new-plugin NAME``: a complete plugin distribution from the template in ``tl_core/plugin_template``.

Every file of the template whose name ends in ``.tmpl`` is copied with ``{{name}}`` (the plugin's entry-point
name, e.g. ``birds``) and ``{{package}}`` (its Python package, ``tl_birds``) filled in, in file names too.
"""

from __future__ import annotations

import re
from pathlib import Path

from tl_core.errors import TLError

TEMPLATE = Path(__file__).with_name("plugin_template")
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def new_plugin(name: str, where: Path) -> Path:
    """Write ``where/tl-NAME`` and return it; nothing is written when the name is bad or the folder exists."""
    if not NAME.match(name):
        raise TLError(f"plugin name {name!r}: use lowercase letters, digits and single dashes, starting with a "
                      "letter (e.g. birds, x-ray)")
    package = "tl_" + name.replace("-", "_")
    target = where / f"tl-{name}"
    if target.exists():
        raise TLError(f"{target} already exists; choose another name or remove it")
    files = {}
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        rel = str(source.relative_to(TEMPLATE))[: -len(".tmpl")]
        rel = rel.replace("{{package}}", package).replace("{{name}}", name)
        text = source.read_text(encoding="utf-8").replace("{{package}}", package).replace("{{name}}", name)
        files[rel] = text
    for rel, text in files.items():  # everything rendered first: a template error leaves nothing half-written
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
