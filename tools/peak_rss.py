"""Run a command and measure its peak resident memory.

    python tools/peak_rss.py OUT.txt COMMAND [ARGS...]

Runs COMMAND as a child of this (small) process, passes its stdin, stdout and stderr through, writes
its peak RSS in bytes to OUT.txt and exits with its exit status. Why a separate process: on Linux a
child's ``ru_maxrss`` (and ``wait4``'s) counts the pages it shared with its parent when it was
forked, so a child of a large process (a test runner, a benchmark that imported torch) reports at
least the parent's size. Forked from this process, which holds little more than the interpreter,
the figure is the command's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def measure(command: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run ``command`` through this script: (the completed process with its output captured,
    wall seconds, peak RSS in bytes). ``kwargs`` go to ``subprocess.run`` (cwd, env)."""
    with tempfile.TemporaryDirectory() as folder:
        peak = os.path.join(folder, "peak")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), peak, *command], capture_output=True,
                              **kwargs)
        wall = time.perf_counter() - start
        with open(peak) as handle:
            return proc, wall, int(handle.read())


def main() -> int:
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, command = sys.argv[1], sys.argv[2:]
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    with open(out, "w") as handle:
        handle.write(f"{usage.ru_maxrss * 1024}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
