"""The plugin manager: built-in plugins first, then entry points of group ``tl``; pluggy does the dispatch.

``TL_PLUGINS`` is an allow-list of entry-point plugins (set but empty = none); ``TL_DISABLE_PLUGINS`` a
block-list. Built-in plugins always load: they are the core's own behaviour. A plugin whose ``TL_HOOK_API``
range leaves out :data:`tl_core.HOOK_API_VERSION` (and every older version this tl still runs) is skipped as
``incompatible``.

Every hook is called through pluggy (:func:`hook` returns ``pm.hook``), so the specs' ``firstresult`` holds and
hook wrappers run. tl's side of the contract travels with each implementation instead: when a plugin is
registered, each of its hook implementations is wrapped (:class:`Contracted`) so that

- an answering hook's answer is checked against its declared shape (:mod:`tl_core.contract`): a wrong one ends
  in one :class:`PluginError` line naming the plugin;
- an event hook that raises switches its plugin off (named, with the reason) and the others go on;
- a registration hook hands back what it registered, so that the registry knows who registered what, and a
  plugin whose registration raises keeps nothing.

``TL_TRACE_PLUGINS=1`` prints every hook call through pluggy's own hook-call monitor, and each answer with the
plugin that gave it, to stderr.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from tl_core import HOOK_API_VERSION, NAME, hookimpl, hookspecs
from tl_core.contract import CHECKS
from tl_core.errors import PluginError
from tl_core.registry import Registry

BUILTIN_PLUGINS = {
    "tl.policies": "tl_core.builtin.policies",
    "tl.classification": "tl_core.builtin.classification.plugin",
}

#: registry kind -> the registration hook that fills it
REGISTRATION_HOOKS = {
    "backbone": "tl_register_backbones",
    "head": "tl_register_heads",
    "policy": "tl_register_policies",
    "data format": "tl_register_datasets",
    "recipe": "tl_register_recipes",
}
#: backbone names with a library prefix, built on first use (tl_core.ecosystem, imported only then: tl plugins and
#: the listings never load it, nor the library)
BACKBONE_RESOLVERS = {"timm": "tl_core.ecosystem.timm_models:timm_spec",
                      "torchvision": "tl_core.ecosystem.torchvision_models:torchvision_spec",
                      "hf": "tl_core.ecosystem.hf_models:hf_spec"}
EVENT_HOOKS = ("tl_on_run_start", "tl_on_epoch_end", "tl_on_run_end", "tl_add_commands")
#: older hook APIs whose plugins this tl still runs (names that moved warn; see tl_core.compat)
LEGACY_HOOK_APIS = ("1.1", "1.0")


@dataclass
class PluginInfo:
    """What ``tl plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    status: str = "loaded"  # loaded | failed | disabled | incompatible | missing
    reason: str | None = None
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


pm = pluggy.PluginManager(NAME)
pm.add_hookspecs(hookspecs)

_plugins: dict[str, PluginInfo] = {}
_loaded = False
_registries: dict[str, Registry[Any]] = {}
_filling: set[str] = set()  # registries whose registration hooks are running
_undo_trace: Callable[[], None] | None = None


# ------------------------------------------------------------------ versions


def hook_api(module: object) -> tuple[str | None, str | None]:
    """``(why it cannot be used, the older hook API it was written for)`` from a plugin's ``TL_HOOK_API`` range:
    ``(None, None)`` for a plugin of this version (or without a range), ``(None, "1.1")`` for one this tl runs
    through its compatibility layer, ``(reason, None)`` for one it cannot run."""
    wanted = getattr(module, "TL_HOOK_API", None)
    if wanted is None:
        return None, None
    try:
        spec = SpecifierSet(str(wanted))
    except InvalidSpecifier:
        return f"TL_HOOK_API {wanted!r} is not a version range (write it like '>=2.0,<3')", None
    if HOOK_API_VERSION in spec:
        return None, None
    legacy = next((v for v in LEGACY_HOOK_APIS if v in spec), None)
    if legacy is not None:
        return None, legacy
    return f"needs tl hook API {wanted}; this tl has {HOOK_API_VERSION} (upgrade the plugin or tl)", None



# ------------------------------------------------------------------ tracing


def _tracing() -> bool:
    return os.environ.get("TL_TRACE_PLUGINS", "").strip() not in ("", "0")


def _short(value: Any, limit: int = 100) -> str:
    text = " ".join(repr(value).split())  # one line, however the object prints itself
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _say(line: str) -> None:
    if _tracing():
        print(f"tl trace: {line}", file=sys.stderr)


def _trace() -> None:
    """pluggy's hook-call monitor prints each call (with its arguments) and its overall answer to stderr; the
    contract wrappers add which plugin gave each answer."""
    global _undo_trace

    def before(hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
        args = ", ".join(f"{k}={_short(v, 60)}" for k, v in kwargs.items() if k != "register")
        n = sum(1 for impl in hook_impls if not (impl.hookwrapper or impl.wrapper))
        print(f"tl trace: {hook_name}({args}) -> {n} implementations", file=sys.stderr)

    def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
        exc = outcome.exception
        if exc is not None:
            print(f"tl trace: {hook_name} raised {type(exc).__name__}: {_short(str(exc))}", file=sys.stderr)
        elif hook_name not in EVENT_HOOKS and not hook_name.startswith("tl_register_"):
            # registrations answer through register(), events answer nothing
            print(f"tl trace: {hook_name} answered {_short(outcome.get_result())}", file=sys.stderr)

    if _undo_trace is None:
        _undo_trace = pm.add_hookcall_monitoring(before, after)


# ------------------------------------------------------------------ tl's side of each implementation


@dataclass
class Registered:
    """What a plugin's registration hook handed back: the items it registered, or what it raised."""

    plugin: str
    items: list[Any]
    error: BaseException | None = None


def _registration(hook: str, plugin: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def implementation(*args: Any, **kwargs: Any) -> Registered:
        staged: list[Any] = []
        try:
            function(register=staged.append)
        except Exception as exc:  # a plugin's failure is its own: recorded, and the others keep working
            return Registered(plugin, [], exc)
        return Registered(plugin, staged)

    return implementation


def _answering(hook: str, plugin: str, function: Callable[..., Any]) -> Callable[..., Any]:
    check = CHECKS.get(hook)

    @functools.wraps(function)
    def implementation(*args: Any, **kwargs: Any) -> Any:
        try:
            answer = function(*args, **kwargs)
        except Exception as exc:
            _say(f"{hook} raised by {plugin!r}: {type(exc).__name__}: {_short(str(exc))}")
            raise
        if answer is None:
            return None
        _say(f"{hook} answered by {plugin!r}: {_short(answer)}")
        problem = check(answer) if check is not None else None
        if problem:
            raise PluginError(
                f"plugin {plugin!r} broke the {hook} contract: it answered {_short(answer, 60)}, but {hook} "
                f"{problem} (docs/plugin_hooks.md); update the plugin, or switch it off with "
                f"TL_DISABLE_PLUGINS={plugin}"
            )
        return answer

    return implementation


def _event(hook: str, plugin: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def implementation(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception as exc:  # KeyboardInterrupt and other BaseExceptions still stop the run
            _switch_off(plugin, f"{hook} raised {type(exc).__name__}: {exc}")

    return implementation


def _legacy_smoke(plugin: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Hook API 1.1 looked for a plain module function ``tl_conformance_smoke(recipe, folder)`` and called it for
    the plugin's own recipes only; 2.0 makes it a hook. The old function keeps working, registered as the hook for
    the plugin's own recipes, with a warning."""
    warnings.warn(
        f"plugin {plugin!r}: tl_conformance_smoke is a hook since tl hook API 2.0; mark it with @hookimpl and name "
        "its parameters (recipe_name, folder)", DeprecationWarning, stacklevel=2,
    )

    def own_recipes_only(recipe_name: str, folder: Any) -> Any:
        recipes = registry("recipe")
        if recipe_name not in recipes or recipes.owner(recipe_name) != plugin:
            return None
        return function(recipe_name, folder)

    return hookimpl(specname="tl_conformance_smoke")(_answering("tl_conformance_smoke", plugin, own_recipes_only))


class Contracted:
    """A plugin as tl registers it with pluggy: each of its hook implementations, wrapped with tl's side of the
    contract (see the module docstring). Hook wrappers (``wrapper=True``, ``hookwrapper=True``) are passed on
    as they are; they are refused on the registration hooks, whose results are tl's own bookkeeping."""

    def __init__(self, plugin: object, name: str) -> None:
        self.plugin = plugin
        self.tl_plugin_name = name
        for attr in dir(plugin):
            opts = pm.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                if attr == "tl_conformance_smoke" and callable(getattr(plugin, attr, None)):
                    setattr(self, attr, _legacy_smoke(name, getattr(plugin, attr)))
                continue
            function = getattr(plugin, attr)
            hook = opts.get("specname") or attr
            if opts.get("wrapper") or opts.get("hookwrapper"):
                if hook in REGISTRATION_HOOKS.values():
                    raise pluggy.PluginValidationError(
                        plugin, f"{hook}: hook wrappers are not allowed on registration hooks (call register())"
                    )
                setattr(self, attr, function)
            elif hook in REGISTRATION_HOOKS.values():
                setattr(self, attr, _registration(hook, name, function))
            elif hook in EVENT_HOOKS:
                setattr(self, attr, _event(hook, name, function))
            else:
                setattr(self, attr, _answering(hook, name, function))

    def __repr__(self) -> str:
        return f"<tl plugin {self.tl_plugin_name!r}: {self.plugin!r}>"


# ------------------------------------------------------------------ loading


def _env_list(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {p.strip() for p in value.split(",") if p.strip()}


def _register(name: str, module: object, info: PluginInfo, loading_notes: tuple[str, ...] = ()) -> None:
    """Register ``module`` as plugin ``name``; ``loading_notes`` are the deprecation warnings importing it gave
    (names it takes from where hook API 1.1 had them), shown with its status."""
    reason, legacy = hook_api(module)
    if reason is not None:
        info.status, info.reason = "incompatible", reason
        _plugins[name] = info
        return
    contracted: Contracted | None = None
    try:
        twin = next((n for n, p in pm.list_name_plugin() if getattr(p, "plugin", None) is module), None)
        if twin is not None:
            raise ValueError(f"the same plugin is already registered as {twin!r}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            contracted = Contracted(module, name)
        pm.register(contracted, name=name)
        pm.check_pending()
    except Exception as exc:  # a hookimpl with a wrong name or signature
        if contracted is not None and pm.is_registered(contracted):  # this plugin only: the name may be another's
            pm.unregister(contracted)
        info.status, info.reason = "failed", f"{type(exc).__name__}: {exc}"
    else:
        info.hooks = sorted(h.name for h in pm.get_hookcallers(contracted) or [])
        notes = [*loading_notes, *(str(w.message) for w in caught)]
        if legacy:
            notes.insert(0, f"written for tl hook API {legacy} (TL_HOOK_API {module.TL_HOOK_API!r}); runs on "  # type: ignore[attr-defined]
                            f"{HOOK_API_VERSION} through its compatibility layer: update the plugin to 2.0 "
                            "(docs/writing_plugins.md, 'Migrating from hook API 1.1')")
        if notes:
            info.reason = "; ".join(notes)
            for note in notes:
                warnings.warn(note, DeprecationWarning, stacklevel=2)
    _plugins[name] = info


def load_plugins() -> None:
    """Register built-in plugins, then entry-point plugins. Safe to call many times."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    if _tracing():
        _trace()
    for name, modname in BUILTIN_PLUGINS.items():
        _register(name, importlib.import_module(modname), PluginInfo(name, modname, builtin=True))

    allow, block = _env_list("TL_PLUGINS"), _env_list("TL_DISABLE_PLUGINS") or set()
    for ep in entry_points(group=NAME):
        info = PluginInfo(ep.name, ep.value)
        if ep.dist is not None:
            info.distribution, info.version = ep.dist.name, ep.dist.version
        if (allow is not None and ep.name not in allow) or ep.name in block:
            info.status = "disabled"
            info.reason = "blocked by TL_DISABLE_PLUGINS" if ep.name in block else "not in TL_PLUGINS"
            _plugins[ep.name] = info
            continue
        try:
            with warnings.catch_warnings(record=True) as imported:
                warnings.simplefilter("always", DeprecationWarning)
                module = ep.load()
        except Exception as exc:
            info.status, info.reason = "failed", f"Error importing plugin {ep.name!r}: {type(exc).__name__}: {exc}"
            _plugins[ep.name] = info
            continue
        moved = tuple(dict.fromkeys(str(w.message) for w in imported if issubclass(w.category, DeprecationWarning)))
        _register(ep.name, module, info, moved)
    for name in sorted((allow or set()) - set(_plugins)):
        _plugins[name] = PluginInfo(name, "?", status="missing", reason="named in TL_PLUGINS but not installed")


def hook() -> pluggy.HookRelay:
    """``pm.hook``, with every plugin loaded: the core calls every hook through it."""
    load_plugins()
    return pm.hook


def register_plugin(module: object, name: str) -> None:
    """Register an in-process plugin (tests, notebooks) and forget filled registries so they refill.

    A name that TL_PLUGINS or TL_DISABLE_PLUGINS kept from loading is free: a plugin's own tests switch its
    installed entry point off and register the module in-process under its usual name."""
    load_plugins()
    if name in _plugins and _plugins[name].status not in ("disabled", "missing"):
        raise ValueError(f"a plugin called {name!r} is already registered")
    _register(name, module, PluginInfo(name, getattr(module, "__name__", repr(module))))
    _registries.clear()


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` and forget filled registries."""
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    _plugins.pop(name, None)
    _registries.clear()


def plugins() -> list[PluginInfo]:
    """Every plugin seen, loaded or not, built-ins first. Filling the registries records their failures too."""
    load_plugins()
    for kind in REGISTRATION_HOOKS:
        registry(kind)
    return list(_plugins.values())


def _switch_off(name: str, reason: str) -> None:
    """Record a plugin's failure and unregister it, so that none of its hooks runs half-working; every registry
    already filled is filled again without it on next use, so nothing it registered stays."""
    info = _plugins.get(name)
    if info is not None:
        info.status, info.reason = "failed", reason
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    _registries.clear()
    print(f"tl: plugin {name!r} switched off: {reason}", file=sys.stderr)


def _no_register(item: Any) -> None:
    raise PluginError("register() is handed to each registration hook by tl; it cannot be called from here")


def registry(kind: str) -> Registry[Any]:
    """The registry of ``kind`` (``backbone``, ``head``, ``policy``, ``data format``, ``recipe``), filled once.

    Each plugin's registration hook runs through pluggy; what it registered is kept only if it returned normally,
    and an exception (a duplicate name included) switches that plugin alone off. A registration hook that looks up
    the registry it is filling gets a :class:`PluginError` (and is switched off): the registry does not exist yet.
    """
    if kind in _registries:
        return _registries[kind]
    hookname = REGISTRATION_HOOKS[kind]
    if kind in _filling:
        raise PluginError(
            f"the {kind} registry was looked up inside a {hookname} hook, which is filling it: a registration hook "
            "cannot look up what is being registered; to reuse a core backbone take tl_core.api.core_backbone(name), "
            "or look the registry up later, in a factory or a hook that runs after registration"
        )
    load_plugins()
    _filling.add(kind)
    try:
        answers: list[Registered] = getattr(pm.hook, hookname)(register=_no_register)
    finally:
        _filling.discard(kind)
    reg: Registry[Any] = Registry(kind, BACKBONE_RESOLVERS if kind == "backbone" else None)
    for answer in reversed(answers):  # registration order: built-ins first
        try:
            if answer.error is not None:
                raise answer.error
            staged: Registry[Any] = Registry(kind)
            for item in answer.items:
                staged.register(item.name, item, plugin=answer.plugin)  # catches duplicates within the plugin
                if item.name in reg:
                    reg.register(item.name, item, plugin=answer.plugin)  # raises: duplicate across plugins
        except Exception as exc:
            _switch_off(answer.plugin, f"{hookname} raised {type(exc).__name__}: {exc}")
            continue
        for item in answer.items:
            reg.register(item.name, item, plugin=answer.plugin)
    _registries[kind] = reg
    return reg


def reset() -> None:
    """Forget every plugin and filled registry; the next use loads them again (for tests)."""
    global _loaded, _undo_trace
    if _undo_trace is not None:
        _undo_trace()
        _undo_trace = None
    for _, plugin in list(pm.list_name_plugin()):
        pm.unregister(plugin)
    _plugins.clear()
    _registries.clear()
    _loaded = False
