"""One generic name -> factory registry, used for datasets, methods and probes.

Entries are registered explicitly (no discovery by scanning file names); duplicate names are an error, never a
silent overwrite. The UI's select boxes, forms and help text come from here.

An entry is a *declaration* (name, config class, description, flags) plus its implementation, either given
directly (:meth:`Registry.register`, a decorator) or as an import path ``"package.module:Class"``
(:meth:`Registry.declare`) that is imported on first use of :attr:`Entry.factory`. Declarations of plug-ins that
need torch are made the second way from torch-free modules, so the dashboard lists methods and probes and builds
their forms without importing torch; the description is then read from the implementation's docstring in its
source file, without importing it.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from mmviz.config import Config, EmptyConfig
from mmviz.errors import unknown_name

T = TypeVar("T")


def _docstring_from_source(target: str) -> str:
    """The cleaned docstring of ``"module:attr"`` read from the module's source file (the module is not imported)."""
    module, _, attr = target.partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot find module {module!r} for registry target {target!r}")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == attr:
            return ast.get_docstring(node) or ""
    raise ImportError(f"{module!r} defines no class or function {attr!r} (registry target {target!r})")


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object: its name, implementation, config class, description and capability flags.

    ``target`` is the implementation itself or its import path ``"module:attr"``; :attr:`factory` imports it on
    first use and sets the class attributes the registry declares (``name`` and its ``class_flags``).
    """

    name: str
    target: Callable[..., T] | str
    config_cls: type[Config]
    given_description: str | None
    flags: dict[str, Any]
    registry: Registry[T] = dataclasses.field(repr=False, compare=False)

    @property
    def factory(self) -> Callable[..., T]:
        """The implementation (imported on first use when declared by import path)."""
        return self.registry._resolve(self)

    @property
    def description(self) -> str:
        """The description given at registration, else the implementation's docstring (read without importing)."""
        if self.given_description is not None:
            return self.given_description
        return self.registry._description(self)

    @property
    def summary(self) -> str:
        """First line of the description."""
        text = self.description.strip()
        return text.splitlines()[0] if text else ""


class Registry(Generic[T]):
    """Maps names to factories with a config class and a description.

    A registered class gets its ``name`` (and the flags named in ``class_flags``, e.g. a probe's ``cadence`` or a
    method's ``requires``) set from the registration, so each is declared once, there.
    """

    def __init__(self, kind: str, class_flags: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.class_flags = class_flags
        self._entries: dict[str, Entry[T]] = {}
        self._resolved: dict[str, Callable[..., T]] = {}
        self._docs: dict[str, str] = {}

    def _add(self, name: str, target: Callable[..., T] | str, config: type[Config], description, flags) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, target, config, description, dict(flags), self)

    def register(
        self, name: str, *, config: type[Config] | None = None, description: str | None = None, **flags: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; the description defaults to its docstring."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            cfg = config or getattr(factory, "config_cls", None) or EmptyConfig
            desc = description if description is not None else inspect.cleandoc(factory.__doc__ or "")
            self._add(name, factory, cfg, desc, flags)
            self._resolve(self._entries[name])
            return factory

        return deco

    def declare(
        self, name: str, target: str, *, config: type[Config] = EmptyConfig, description: str | None = None, **flags
    ) -> None:
        """Declare ``name`` implemented by ``target`` (``"module:attr"``), imported only when first used."""
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target {target!r} must read 'module:attr'")
        self._add(name, target, config, description, flags)

    def _resolve(self, entry: Entry[T]) -> Callable[..., T]:
        done = self._resolved.get(entry.name)
        if done is not None:
            return done
        target = entry.target
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
        if isinstance(target, type):
            target.name = entry.name
            for flag in self.class_flags:
                if flag in entry.flags:
                    setattr(target, flag, entry.flags[flag])
            if getattr(target, "config_cls", entry.config_cls) is not entry.config_cls:
                raise TypeError(f"{self.kind} {entry.name!r}: {target.__name__}.config_cls is not the declared config")
        self._resolved[entry.name] = target
        return target

    def _description(self, entry: Entry[T]) -> str:
        if entry.name not in self._docs:
            target = entry.target
            text = _docstring_from_source(target) if isinstance(target, str) else inspect.cleandoc(target.__doc__ or "")
            self._docs[entry.name] = text
        return self._docs[entry.name]

    def get(self, name: str) -> Entry[T]:
        """Return the entry for ``name`` or raise the standard unknown-name error."""
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)
