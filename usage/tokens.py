"""Token counting for prompts and running outputs, where the provider gives no figure.

Interface (stable): `count_tokens(text, model=None) -> int` and `cache_stats() -> dict`
with keys hits, misses, entries.
"""

from __future__ import annotations

import math
from functools import lru_cache


@lru_cache(maxsize=4096)
def _count(text: str, model: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def count_tokens(text: str, model: str | None = None) -> int:
    return _count(text or "", model or "")


def cache_stats() -> dict[str, int]:
    info = _count.cache_info()
    return {"hits": info.hits, "misses": info.misses, "entries": info.currsize}
