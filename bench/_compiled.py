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


def compile_edsync() -> None:
    compileall.compile_dir(Path(edsync.__file__).parent, quiet=1)
