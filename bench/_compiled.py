"""Byte-compile edsync before timing it, as an installed wheel is.

An editable install leaves ``src/edsync`` without bytecode, and with
``PYTHONDONTWRITEBYTECODE`` set (as on the CI machines) every ``edsync``
process would compile each of its modules again: start-up cost that no
installed edsync pays.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import edsync
import edsync_sim


def compile_edsync() -> None:
    """edsync and, since it is its own package now, the simulator the benches serve from."""
    for package in (edsync, edsync_sim):
        compileall.compile_dir(Path(package.__file__ or "").parent, quiet=1)
