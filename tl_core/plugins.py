"""The plugin manager: built-in plugins first, then entry points of group ``tl``.

``TL_PLUGINS`` is an allow-list of entry-point plugins (set but empty = none); ``TL_DISABLE_PLUGINS`` a
block-list. Built-in plugins always load: they are the core's own behaviour. A plugin that fails to import, or
raises in a registration hook, is recorded with its reason (see ``tl plugins``) and the others keep working. A
plugin whose ``TL_HOOK_API`` range leaves out :data:`tl_core.HOOK_API_VERSION` is skipped as ``incompatible``.
``TL_TRACE_PLUGINS=1`` prints every hook call, who answered and what, to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from tl_core import HOOK_API_VERSION, NAME, hookspecs
from tl_core.contract import CHECKS
from tl_core.errors import PluginError
from tl_core.registry import Registry

BUILTIN_PLUGINS = (
    "tl_core.builtin.vision",
    "tl_core.builtin.heads",
    "tl_core.builtin.policies",
    "tl_core.builtin.data",
    "tl_core.builtin.recipes",
    "tl_core.builtin.classification",
)

#: registry kind -> the registration hook that fills it
REGISTRATION_HOOKS = {
    "backbone": "tl_register_backbones",
    "head": "tl_register_heads",
    "policy": "tl_register_policies",
    "data format": "tl_register_datasets",
    "recipe": "tl_register_recipes",
}


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


def _env_list(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {p.strip() for p in value.split(",") if p.strip()}


def incompatibility(module: object) -> str | None:
    """Why ``module`` cannot be used with this tl (its ``TL_HOOK_API`` range), or ``None``."""
    wanted = getattr(module, "TL_HOOK_API", None)
    if wanted is None:
        return None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = SpecifierSet(str(wanted))
    except InvalidSpecifier:
        return f"TL_HOOK_API {wanted!r} is not a version range (write it like '>=1.0,<2')"
    if HOOK_API_VERSION in spec:
        return None
    return f"needs tl hook API {wanted}; this tl has {HOOK_API_VERSION} (upgrade the plugin or tl)"


def _register(name: str, module: object, info: PluginInfo) -> None:
    reason = incompatibility(module)
    if reason is not None:
        info.status, info.reason = "incompatible", reason
        _plugins[name] = info
        return
    try:
        pm.register(module, name=name)
        pm.check_pending()
    except Exception as exc:  # a hookimpl with a wrong name or signature
        if pm.is_registered(module):
            pm.unregister(module)
        info.status, info.reason = "failed", f"{type(exc).__name__}: {exc}"
    else:
        info.hooks = sorted(h.name for h in pm.get_hookcallers(module) or [])
    _plugins[name] = info


def load_plugins() -> None:
    """Register built-in plugins, then entry-point plugins. Safe to call many times."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    if _tracing():
        _trace()
    for modname in BUILTIN_PLUGINS:
        short = modname.rsplit(".", 1)[-1]
        _register(f"tl.{short}", importlib.import_module(modname), PluginInfo(f"tl.{short}", modname, builtin=True))

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
            module = ep.load()
        except Exception as exc:
            info.status, info.reason = "failed", f"Error importing plugin {ep.name!r}: {type(exc).__name__}: {exc}"
            _plugins[ep.name] = info
            continue
        _register(ep.name, module, info)
    for name in sorted((allow or set()) - set(_plugins)):
        _plugins[name] = PluginInfo(name, "?", status="missing", reason="named in TL_PLUGINS but not installed")


_undo_trace: Callable[[], None] | None = None


def _short(value: Any, limit: int = 100) -> str:
    text = " ".join(repr(value).split())  # one line, however the object prints itself
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _trace() -> None:
    """Print each hook call (with its arguments), and each answer with the plugin that gave it, to stderr."""
    global _undo_trace

    def before(hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
        args = ", ".join(f"{k}={_short(v, 60)}" for k, v in kwargs.items() if k != "register")
        print(f"tl trace: {hook_name}({args}) -> {len(hook_impls)} implementations", file=sys.stderr)

    def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
        exc = outcome.exception
        if exc is not None:
            print(f"tl trace: {hook_name} raised {type(exc).__name__}: {_short(str(exc))}", file=sys.stderr)
            return
        result = outcome.get_result()
        if hook_name.startswith("tl_register_"):
            return  # registrations answer through register(); the registries list what they got
        print(f"tl trace: {hook_name} answered {_short(result)}", file=sys.stderr)

    if _undo_trace is None:
        _undo_trace = pm.add_hookcall_monitoring(before, after)


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
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    _plugins.pop(name, None)
    _registries.clear()


def plugins() -> list[PluginInfo]:
    """Every plugin seen, loaded or not, built-ins first. Filling the registries records their failures too."""
    load_plugins()
    for kind in REGISTRATION_HOOKS:
        registry(kind)
    return list(_plugins.values())


def _switch_off(plugin: object, name: str, reason: str) -> None:
    """Record a plugin's failure and unregister it, so that none of its hooks runs half-working; registries it
    already filled are refilled without it on next use."""
    info = _plugins.get(name)
    if info is not None:
        info.status, info.reason = "failed", reason
    if pm.is_registered(plugin):
        pm.unregister(plugin)
    for kind in [k for k in _registries]:
        del _registries[kind]
    print(f"tl: plugin {name!r} switched off: {reason}", file=sys.stderr)


def _tracing() -> bool:
    return os.environ.get("TL_TRACE_PLUGINS", "").strip() not in ("", "0")


def _say(line: str) -> None:
    if _tracing():
        print(f"tl trace: {line}", file=sys.stderr)


def _implementations(hookname: str, kwargs: dict[str, Any], calling_order: bool = True) -> list[Any]:
    """The hook's implementations (hook wrappers left out), in pluggy's calling order (the last registered first,
    ``tryfirst``/``trylast`` honoured) or in registration order; traces the call. The core calls every hook
    through this, one implementation at a time, so it knows which plugin answered or raised."""
    load_plugins()
    impls = [i for i in getattr(pm.hook, hookname).get_hookimpls() if not (i.hookwrapper or i.wrapper)]
    if calling_order:
        impls.reverse()
    args = ", ".join(f"{k}={_short(v, 60)}" for k, v in kwargs.items() if k != "register")
    _say(f"{hookname}({args}) -> {len(impls)} implementations")
    return impls


def answers(hookname: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """``(plugin name, answer)`` for each plugin that answers ``hookname`` (``None`` answers left out), in pluggy's
    calling order (the last registered first, ``tryfirst``/``trylast`` honoured), each answer checked against the
    hook's contract (:mod:`tl_core.contract`): a wrong shape raises :class:`PluginError` naming the plugin.

    The core calls its answering hooks through this and :func:`first_answer` rather than ``pm.hook``, so that an
    answer can be traced to the plugin that gave it (``TL_TRACE_PLUGINS=1`` prints each)."""
    check = CHECKS.get(hookname)
    for impl in _implementations(hookname, kwargs):
        name = impl.plugin_name
        try:
            answer = impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception as exc:
            _say(f"{hookname} raised by {name!r}: {type(exc).__name__}: {_short(str(exc))}")
            raise
        if answer is None:
            continue
        _say(f"{hookname} answered by {name!r}: {_short(answer)}")
        problem = check(answer) if check is not None else None
        if problem:
            raise PluginError(
                f"plugin {name!r} broke the {hookname} contract: it answered {_short(answer, 60)}, but {hookname} "
                f"{problem} (docs/plugin_hooks.md); update the plugin, or switch it off with TL_DISABLE_PLUGINS={name}"
            )
        yield name, answer


def first_answer(hookname: str, **kwargs: Any) -> Any:
    """The first plugin's answer to a ``firstresult`` hook, checked as :func:`answers` does; ``None`` if none."""
    for _, answer in answers(hookname, **kwargs):
        return answer
    return None


def call_each(hookname: str, **kwargs: Any) -> None:
    """Call an event hook on every plugin; a plugin that raises is switched off and named, the others go on.

    ``KeyboardInterrupt`` and other ``BaseException``s still stop the run.
    """
    for impl in _implementations(hookname, kwargs):
        try:
            impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception as exc:
            name = _plugin_name(impl.plugin)
            _switch_off(impl.plugin, name, f"{hookname} raised {type(exc).__name__}: {exc}")


def _plugin_name(plugin: object) -> str:
    return pm.get_name(plugin) or repr(plugin)


def registry(kind: str) -> Registry[Any]:
    """The registry of ``kind`` (``backbone``, ``head``, ``policy``, ``data format``, ``recipe``), filled once.

    Each plugin's registration hook runs on its own: what it registered is kept only if it returned normally,
    and an exception (a duplicate name included) is recorded against that plugin alone.
    """
    if kind in _registries:
        return _registries[kind]
    reg: Registry[Any] = Registry(kind)
    hookname = REGISTRATION_HOOKS[kind]
    for impl in _implementations(hookname, {}, calling_order=False):  # built-ins first
        name = _plugin_name(impl.plugin)
        collected: list[Any] = []
        register: Callable[[Any], None] = collected.append
        try:
            impl.function(register=register)
            staged: Registry[Any] = Registry(kind)
            for item in collected:
                staged.register(item.name, item, plugin=name)  # catches duplicates within the plugin
                if item.name in reg:
                    reg.register(item.name, item, plugin=name)  # raises: duplicate across plugins
        except Exception as exc:
            _switch_off(impl.plugin, name, f"{hookname} raised {type(exc).__name__}: {exc}")
            continue
        for item in collected:
            reg.register(item.name, item, plugin=name)
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
