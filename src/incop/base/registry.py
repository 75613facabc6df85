"""A small name -> factory registry, shared by models, datasets and methods."""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterable, List, TypeVar

from .errors import UsageError

T = TypeVar("T")


def _key(name: str) -> str:
    # Users type "FashionMNIST", "fashion-mnist" and "fashion_mnist" alike.
    return name.lower().replace("-", "").replace("_", "")


class Registry(Generic[T]):
    """Maps case- and punctuation-insensitive names (and aliases) to objects."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._canonical: Dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            self.add(name, obj, *aliases)
            return obj

        return decorate

    def add(self, name: str, obj: T, *aliases: str) -> None:
        for n in (name, *aliases):
            self._items[_key(n)] = obj
            self._canonical[_key(n)] = name

    def __contains__(self, name: str) -> bool:
        return _key(name) in self._items

    def get(self, name: str, flag: str = "") -> T:
        try:
            return self._items[_key(name)]
        except KeyError:
            prefix = f"{flag}: " if flag else ""
            raise UsageError(
                f"{prefix}unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            ) from None

    def canonical(self, name: str, flag: str = "") -> str:
        self.get(name, flag)
        return self._canonical[_key(name)]

    def names(self) -> List[str]:
        return sorted(set(self._canonical.values()), key=str.lower)

    def items(self) -> Iterable:
        return ((n, self.get(n)) for n in self.names())
