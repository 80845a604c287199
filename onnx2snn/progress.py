"""Progress bars on long loops (tqdm on stderr), shown only when stderr is a terminal."""

from __future__ import annotations

import sys

from tqdm import tqdm

_enabled: bool | None = None  # None: decide by whether stderr is a terminal


def set_enabled(enabled: bool | None) -> None:
    """Force progress bars on (True) or off (False); None restores the terminal check."""
    global _enabled
    _enabled = enabled


def progress(iterable, total: int | None = None, desc: str = ""):
    show = _enabled if _enabled is not None else sys.stderr.isatty()
    if not show or not desc:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, unit="batch")
