"""Import a module on first use: PID 1 starts faster under emulation when the Path C, menu
and network modules (and the EFI codec and OCI client they pull in) load only on the boots
that need them. The initramfs builder still packs them: callers also import them for real
under TYPE_CHECKING, which its import walk follows."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)
