"""py-spy around a bench phase: record a server process, then print the profile's top lines.

py-spy is a bench tool, not a requirement of the app: install it outside the project's virtualenv
(`python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy`) and pass its path
(`--py-spy /tmp/pyspy/bin/py-spy`). `Profile(pid, path)` starts `py-spy record --format raw` on
`pid` (only the thread holding the GIL: where the process spends CPU in Python), `stop()` ends it and `top()` reads the collapsed
stacks: the functions with the most samples on top of the stack (self) and on it anywhere (total).
"""

from __future__ import annotations

import collections
import signal
import subprocess
from pathlib import Path


class Profile:
    def __init__(self, py_spy: str, pid: int, path: Path, rate: int = 200) -> None:
        self.path = path
        self.process = subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "--output", str(path),
             "--nonblocking", "--gil"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py:123)"
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name


def top(path: Path, lines: int = 15) -> str:
    """The profile's top lines: self and total samples per function, as shares of all samples."""
    if not path.exists():
        return f"(no profile at {path})"
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for row in path.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        # The first frame is the thread ("process 123:..." / "thread (0x...)"), then outermost first.
        samples += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            total[frame] += n
    if not samples:
        return f"(no samples in {path})"
    out = [f"{samples} samples ({path.name}); self:"]
    out += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in own.most_common(lines)]
    out.append("total (on the stack):")
    out += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in total.most_common(lines + 10)
            if not name.startswith(("<module>", "run (", "_run (", "run_forever", "_run_once", "mainLoop", "process "))
            ][:lines]
    return "\n".join(out)
