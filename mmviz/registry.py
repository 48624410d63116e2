"""One generic name -> factory registry, used for datasets, models, fusions, methods and probes.

Entries are registered explicitly (no discovery by scanning file names); duplicate names are an
error, never a silent overwrite. The UI's select boxes and help text come from here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from mmviz.config import Config, EmptyConfig
from mmviz.errors import unknown_name

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object: its name, factory, config class, description and capability flags."""

    name: str
    factory: Callable[..., T]
    config_cls: type[Config]
    description: str
    flags: dict[str, Any]

    @property
    def summary(self) -> str:
        """First line of the description."""
        return self.description.strip().splitlines()[0] if self.description.strip() else ""


class Registry(Generic[T]):
    """Maps names to factories with a config class and a description.

    A registered class gets its ``name`` (and the flags named in ``class_flags``, e.g. a probe's ``cadence``) set
    from the registration, so each is declared once, there.
    """

    def __init__(self, kind: str, class_flags: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.class_flags = class_flags
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, config: type[Config] | None = None, description: str | None = None, **flags: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; the description defaults to its docstring."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            cfg = config or getattr(factory, "config_cls", None) or EmptyConfig
            desc = description if description is not None else inspect.cleandoc(factory.__doc__ or "")
            self._entries[name] = Entry(name, factory, cfg, desc, dict(flags))
            if isinstance(factory, type):
                factory.name = name
                for flag in self.class_flags:
                    if flag in flags:
                        setattr(factory, flag, flags[flag])
            return factory

        return deco

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
