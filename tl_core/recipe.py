"""Loading recipes: YAML files, ``extends:``, ``--set key.path=value`` overrides, validation against the sections
(:mod:`tl_core.sections`) and against the registries (every backbone, head, policy and data format a recipe names,
and their options).

A recipe is never executed: it is read with ``yaml.safe_load``. Every mistake becomes a :class:`RecipeError`
naming the key and, where one is close, the key or name that was probably meant.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tl_core.compat import moved
from tl_core.errors import RecipeError, RegistryError, did_you_mean
from tl_core.files import parse_yaml, read_text
from tl_core.plugins import registry
from tl_core.sections import SECTIONS, Recipe
from tl_core.weights import is_path

# 1.1 plugins imported the sections from here
__getattr__ = moved(__name__, {name: "tl_core.sections" for name in (
    "BackboneConfig", "HeadConfig", "PolicyConfig", "DataConfig", "TrainConfig", "CompareConfig", "format_options")})

# keys whose relative values are paths, resolved against the recipe file that sets them
PATH_KEYS = (("data", "path"), ("data", "test_path"), ("backbone", "weights"))


# ---------------------------------------------------------------- reading files


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RecipeError(f"recipe file {str(path)!r} does not exist")
    data = parse_yaml(read_text(path, str(path), RecipeError), str(path), RecipeError)
    _check_depth(data, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: a recipe is a mapping of keys (task, backbone, data, ...), not {type(data).__name__}"
        )
    for section, key in PATH_KEYS:
        value = (data.get(section) or {}).get(key) if isinstance(data.get(section), dict) else None
        if isinstance(value, str) and _looks_like_path(section, key, value) and not Path(value).is_absolute():
            data[section][key] = str((path.parent / value).resolve())
    return data


MAX_DEPTH = 32  # far deeper than any recipe needs; deeper input would reach Python's recursion limit downstream
MAX_VALUES = 100_000  # what a recipe may expand to: YAML aliases (*a) repeat a part, and a few lines can repeat it
# billions of times ("billion laughs"), which validation and the report would then walk in full


def _check_depth(value: Any, origin: str) -> None:
    """Refuse data nested deeper than :data:`MAX_DEPTH`, naming where it goes deep, or expanding to more than
    :data:`MAX_VALUES` values. Each node is walked once per depth it is reached at (a node shared through YAML
    aliases is not walked again), so this is quick whatever the file holds, and it needs no recursion."""
    deepest: dict[int, int] = {}
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        node, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise RecipeError(f"{origin}: nested more than {MAX_DEPTH} levels deep (at {where.lstrip('.')[:80]!r}); "
                              "a recipe is a few levels of keys")
        if not isinstance(node, (dict, list)) or deepest.get(id(node), -1) >= depth:
            continue
        deepest[id(node)] = depth
        if isinstance(node, dict):
            stack.extend((v, depth + 1, f"{where}.{k}") for k, v in node.items())
        else:
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(node))
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:  # recursion is safe now: at most MAX_DEPTH deep
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) not in sizes:
            children = node.values() if isinstance(node, dict) else node
            sizes[id(node)] = 1 + sum(size(child) for child in children)
        return sizes[id(node)]

    if size(value) > MAX_VALUES:
        raise RecipeError(f"{origin}: expands to more than {MAX_VALUES} values (YAML aliases repeating a part); a "
                          "recipe is a few dozen keys: write them out")


_SCHEME = re.compile(r"^[A-Za-z][\w+.-]+:(?!/)")  # "bible:ny-en", "hf:owner/name" - not "C:/", not "file:/"


def is_named_data(value: str) -> bool:
    """True for a ``scheme:value`` that names something rather than a path: a data set a plugin provides
    (``bible:ny-en``), a hub id (``hf:owner/name``); not ``C:/...`` or ``file:/...``."""
    return bool(_SCHEME.match(value))


def _looks_like_path(section: str, key: str, value: str) -> bool:
    """Relative paths resolve against the recipe file; a ``scheme:value`` (a data set a plugin provides, a hub
    id) is left as it is."""
    if is_named_data(value):
        return False
    return (section, key) != ("backbone", "weights") or is_path(value)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            # a different head/policy name starts from a clean set of options
            if "name" in value and value["name"] != out[key].get("name") and key in ("head", "policy"):
                out[key] = dict(value)
            else:
                out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _locate(source: str) -> Path:
    """A recipe given as a file path, or as a registered ``domain/name``."""
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise RecipeError(f"recipe file {source!r} does not exist")
        return path.resolve()
    try:
        return registry("recipe").get(source).path
    except RegistryError as exc:
        raise RecipeError(f"{exc}; or give the path to a .yaml file") from None


def _load_raw(source: str, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = _locate(source)
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise RecipeError(f"recipe 'extends' goes round in a circle: {chain}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise RecipeError(f"{path}: 'extends' must be a recipe name or a path, not {parent!r}")
    if parent.endswith((".yaml", ".yml")) and not Path(parent).is_absolute():
        parent = str(path.parent / parent)
    return _merge(_load_raw(parent, (*seen, path)), data)


# ---------------------------------------------------------------- --set


def _known_keys(section: str) -> list[str]:
    model = SECTIONS.get(section)
    return list(model.model_fields) if model else []


def apply_set(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``key.path=value`` override; the value is read as YAML (``true``, ``3``, ``[1, 2]``). Naming
    another head or policy (``policy.name=...``) drops the old one's options, as ``extends:`` does: give its own
    options after it."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"--set {assignment!r}: expected key.path=value, e.g. --set train.epochs=5")
    parts = key.split(".")
    top = list(Recipe.model_fields)
    if parts[0] not in top:
        raise RecipeError(f"--set {key}: no such recipe key{did_you_mean(parts[0], top)}")
    if len(parts) > 1 and parts[0] in SECTIONS and parts[0] not in ("head", "policy"):
        fields = _known_keys(parts[0])
        nested_ok = parts[:2] == ["data", "options"]
        if parts[1] not in fields or (len(parts) > 2 and not nested_ok):
            full = [f"{parts[0]}.{f}" for f in fields]
            raise RecipeError(f"--set {key}: no such recipe key{did_you_mean(key, full)}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
        if tuple(parts) in PATH_KEYS and value is not None and not isinstance(value, str):
            value = raw.strip()  # a path or a weights name as written: YAML reads "hf:" as a mapping, "1e5" a number
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise RecipeError(f"--set {key}: the value is nested too deeply to read") from None
    _check_depth(value, f"--set {key}")
    out = dict(data)
    if parts[1:] == ["name"] and parts[0] in ("head", "policy"):
        current = out.get(parts[0]) if isinstance(out.get(parts[0]), dict) else {}
        if current.get("name") != value:  # another head or policy starts from its own defaults, as with extends:
            out[parts[0]] = {"name": value}
            return out
    node = out
    for part in parts[:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[parts[-1]] = value
    return out


# ---------------------------------------------------------------- validation


def _format_error(err: dict[str, Any], origin: str) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        parent, _, leaf = loc.rpartition(".")
        choices = _known_keys(parent) if parent else list(Recipe.model_fields)
        return f"{origin}: unknown key {loc!r}{did_you_mean(leaf, choices)}"
    if err["type"] == "missing":
        return f"{origin}: missing required key {loc!r}"
    value = err.get("input")
    return f"{origin}: {loc}: {err['msg']} (got {value!r})"


def validate(data: dict[str, Any], origin: str = "recipe") -> Recipe:
    """Validate raw recipe data: schema first, then registry names and head/policy options."""
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise RecipeError(_format_error(errors[0], origin) + more) from None
    check_names(recipe, origin)
    return recipe


def _check_options(
    model: type[BaseModel] | None, options: dict[str, Any], key: str, origin: str, owner: str
) -> dict[str, Any]:
    if model is None:
        if options:
            raise RecipeError(f"{origin}: unknown key '{key}.{next(iter(options))}': {owner} takes no options")
        return {}
    try:
        return model.model_validate(options).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        leaf = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise RecipeError(
                f"{origin}: unknown key '{key}.{leaf}'{did_you_mean(leaf, list(model.model_fields))}; "
                f"known: {', '.join(model.model_fields) or 'none'}"
            ) from None
        raise RecipeError(f"{origin}: {key}.{leaf}: {err['msg']} (got {err.get('input')!r})") from None


def check_names(recipe: Recipe, origin: str = "recipe") -> None:
    """Check every registry name the recipe uses, and fill in the head and policy options with their defaults."""
    def lookup(kind: str, key: str, name: str) -> Any:
        try:
            return registry(kind).get(name)
        except RegistryError as exc:
            raise RecipeError(f"{origin}: {key}: {exc}") from None

    # a backbone or head may serve other tasks than those it was made for (an ImageNet backbone adapted to CT
    # volumes): the task's model builder decides, and says so when it cannot
    backbone = lookup("backbone", "backbone.name", recipe.backbone.name)
    head = lookup("head", "head.name", recipe.head.name)
    policy = lookup("policy", "policy.name", recipe.policy.name)
    fmt = lookup("data format", "data.format", recipe.data.format)
    if fmt.task != recipe.task:
        raise RecipeError(f"{origin}: data.format {fmt.name!r} is for task {fmt.task!r}, not {recipe.task!r}")
    w = recipe.backbone.weights
    if w is not None and w.lower() not in ("none", "default") and not is_path(w):
        try:
            backbone.weights_entry(w)
        except Exception as exc:
            raise RecipeError(f"{origin}: backbone.weights: {exc}") from None
    for key, model, section in (("head", head.options, recipe.head), ("policy", policy.Options, recipe.policy)):
        for k, v in _check_options(model, section.options, key, origin, f"{key} {section.name!r}").items():
            setattr(section, k, v)
    recipe.data.options = _check_options(
        fmt.options, recipe.data.options, "data.options", origin, f"data format {fmt.name!r}"
    )


def load_recipe(source: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe (a file path or a registered ``domain/name``), apply ``--set`` overrides, validate."""
    data = _load_raw(source)
    for assignment in overrides:
        data = apply_set(data, assignment)
    origin = source if not overrides else f"{source} (with --set)"
    return validate(data, origin)
