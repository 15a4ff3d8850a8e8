"""What users choose by name lives in registries: a mapping of name to entry that refuses a
name registered twice and answers an unknown name with one line naming the known ones.

    ARMS = Registry("arm", "--method", hint="see `fpt arms`")
    ARMS.register(Arm("lora", ...))
    ARMS.find("lora")      # the entry, or FptError("--method must be one of fpt, full, ...")

Tasks (fpt.tasks), arms (fpt.arms), objectives (fpt.objectives) and the model catalogue
(fpt.catalog) are registries. Torch-free.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Generic, Protocol, TypeVar

from fpt.errors import FptError


def load_reference(reference: str) -> Any:
    """The object a "module:name" reference names, imported now: how a registry entry names the
    code that implements it without importing that code (or torch) when the table is read."""
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class Registry(dict, Generic[T]):
    """name -> entry; a plain dict to read (argparse takes it as `choices`), `register` to add."""

    def __init__(self, kind: str, flag: str, hint: str = ""):
        super().__init__()
        self.kind, self.flag, self.hint = kind, flag, hint

    def register(self, entry: T) -> T:
        if entry.name in self:
            raise ValueError(f"{self.kind} '{entry.name}' is registered twice")
        self[entry.name] = entry
        return entry

    def find(self, name: str) -> T:
        """The entry called `name`, or FptError naming the flag and every known name."""
        entry = self.get(name)
        if entry is None:
            hint = f" ({self.hint})" if self.hint else ""
            raise FptError(f"{self.flag} must be one of {', '.join(self)}, got {name!r}{hint}")
        return entry
