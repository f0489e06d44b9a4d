"""PyInstaller runtime hook: the bundle's children get the environment the bundle was given.

The bootloader re-executes itself (same PID) with LD_LIBRARY_PATH pointing at
the bundle's own libraries and a few `_PYI_*` variables for its bookkeeping.
The dynamic loader has read them by the time any Python code runs. Left in
`os.environ`, they would reach the worker and the exec'd web server: PHP or
Node would then load the bundle's OpenSSL, zlib and libffi instead of their
own image's, and a frozen child program would take them for its own.

This file runs as a runtime hook, before the entrypoint's first line, and is
importable as a module by the tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

BOOTLOADER_PREFIX = "_PYI_"


def restore_environment(env: MutableMapping[str, str]) -> None:
    """Undo what the bootloader added: LD_LIBRARY_PATH as it was (or unset), no `_PYI_*`."""
    original = env.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is None:
        env.pop("LD_LIBRARY_PATH", None)
    else:
        env["LD_LIBRARY_PATH"] = original
    for name in [name for name in env if name.startswith(BOOTLOADER_PREFIX)]:
        del env[name]


if getattr(sys, "frozen", False):
    restore_environment(os.environ)
