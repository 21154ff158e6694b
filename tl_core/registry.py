"""A small named registry: register / get / names, with loud errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from tl_core.components import resolve
from tl_core.errors import RegistryError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Holds one kind of thing (backbones, heads, ...) by unique name, remembering which plugin gave each."""

    def __init__(self, kind: str, resolvers: dict[str, Callable[[str], T] | str] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}
        #: ``"prefix"`` -> a function (or its ``"module:function"`` reference, imported when first needed) building
        #: the item for a name ``prefix:...`` the first time it is asked for (backbones: ``timm:NAME``,
        #: :mod:`tl_core.ecosystem`); the result is kept like a registered item
        self._resolvers = dict(resolvers or {})

    def register(self, name: str, item: T, *, plugin: str = "?") -> None:
        """Add ``item`` under ``name``; a name that is already taken raises :class:`RegistryError`."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r} from plugin {plugin!r}")
        if name in self._items:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: by plugin {self._owners[name]!r} and by {plugin!r}; "
                "rename one or disable a plugin with TL_DISABLE_PLUGINS"
            )
        self._items[name] = item
        self._owners[name] = plugin

    def get(self, name: str) -> T:
        """Return the item called ``name``; an unknown name raises with the closest matches."""
        try:
            return self._items[name]
        except KeyError:
            prefix = name.partition(":")[0] if isinstance(name, str) and ":" in name else None
            if prefix in self._resolvers:
                resolver = self._resolvers[prefix]
                if isinstance(resolver, str):
                    resolver = resolve(resolver, f"the {prefix}: {self.kind} resolver")
                item = resolver(name)
                self.register(name, item, plugin=prefix)
                return item
            known = ", ".join(sorted(self._items)) or "none"
            raise RegistryError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; known: {known}"
            ) from None

    def owner(self, name: str) -> str:
        """The plugin that registered ``name``."""
        self.get(name)
        return self._owners[name]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """``(name, item)`` pairs, sorted by name."""
        return [(n, self._items[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        """Registered or already resolved (a prefixed name not yet asked for is not resolved by this test)."""
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
