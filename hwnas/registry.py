"""timm-style registries: a decorator registers a builder under a name; look-ups fail with the known names.

A registry can also know a name before the module that registers it is imported: `declare(name, module)` (the
built-in ones are declared in hwnas.registries). `names()`, `in` and the CLI's option lists then need no import
(so `hwnas CMD --help` imports no torch); `get(name)` imports the declaring module on first use. Declared traits
(class attributes such as a backend's `runs_onnx`) let `names_with` filter without importing either; `get` checks
that the registered object agrees with its declaration."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from hwnas.errors import HwnasError

T = TypeVar("T")


class DeclarationError(RuntimeError):
    """A declaration that its module contradicts (a bug in hwnas or a plugin, not bad input)."""


class Registry(Generic[T]):
    def __init__(self, kind: str, traits: tuple[str, ...] = ()):
        self.kind = kind
        #: attributes of the registered objects that declarations state (all False unless declared True)
        self.traits = traits
        self._items: dict[str, T] = {}
        self._declared: dict[str, tuple[str, dict[str, Any]]] = {}
        self._checked: set[str] = set()  # declared names whose registered object agreed with the declaration

    def declare(self, name: str, module: str, **traits: Any) -> None:
        """`module` registers `name` when imported; `traits` are what its object says of itself."""
        unknown = set(traits) - set(self.traits)
        if unknown:
            raise DeclarationError(f"{self.kind} {name!r}: unknown trait(s) {sorted(unknown)}; known: {self.traits}")
        if name in self._declared:
            raise DeclarationError(f"{self.kind} {name!r} is declared twice")
        self._declared[name] = (module, {t: traits.get(t, False) for t in self.traits})

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise RuntimeError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name in self._declared and name not in self._checked:
            self._load(name)
        try:
            return self._items[name]
        except KeyError:
            raise HwnasError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def _load(self, name: str) -> None:
        """Import the declaring module unless already done, and check it registered what was declared."""
        module, traits = self._declared[name]
        if name not in self._items:
            importlib.import_module(module)
        if name not in self._items:
            raise DeclarationError(f"{self.kind} {name!r} is declared in {module}, but importing {module} did not "
                                   "register it; fix the declaration (hwnas.registries) or the decorator")
        obj = self._items[name]
        wrong = {t: v for t, v in traits.items() if bool(getattr(obj, t, False)) != bool(v)}
        if wrong:
            raise DeclarationError(f"{self.kind} {name!r}: the declaration says {wrong}, the registered object "
                                   "says otherwise; fix the declaration (hwnas.registries)")
        self._checked.add(name)

    def names(self) -> list[str]:
        """Registered and declared names, sorted; imports nothing."""
        return sorted(self._items.keys() | self._declared.keys())

    def declared(self) -> dict[str, str]:
        """name -> the module declared to register it."""
        return {name: module for name, (module, _) in self._declared.items()}

    def names_with(self, *traits: str) -> list[str]:
        """The names whose object has any of `traits` true: declared ones from their declaration (no import),
        the others (registered by a decorator only, e.g. a plugin) from the object."""
        out = []
        for name in self.names():
            if name in self._declared:
                values = self._declared[name][1]
                if any(values[t] for t in traits):
                    out.append(name)
            elif any(getattr(self._items[name], t, False) for t in traits):
                out.append(name)
        return out

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._declared
