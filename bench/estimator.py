"""Token estimator benchmark: accuracy against the real tokenizer, and speed.

    .venv/bin/python bench/estimator.py

Accuracy: mean and max absolute % error against cl100k_base (the real BPE tokenizer) per corpus
kind, for our heuristic (`usage.tokens.estimate_tokens`) and for seed 002's formula
(`ceil(len/4) * (1 + 0.02 * special chars) * 1.03`), on two corpora: the handwritten one the
heuristic was calibrated on (tests/providers/token_corpus.py) and a held-out one cut from files
installed in the venv (source code, package descriptions, Django's translations, JSON/CSS).
Speed: microseconds per 2,000-character message, cold (heuristic, no cache), cold BPE, and through
the cached `count_tokens`.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatlima.settings")

from tests.providers.token_corpus import CORPUS, message_of
from usage import tokens


def seed_002(text: str) -> int:
    base = math.ceil(len(text) / 4)
    special = len(re.findall(r"[^\w\s]", text))
    return math.ceil(base * (1 + special * 0.02) * 1.03)


def _chunks(text: str, size: int, count: int) -> list[str]:
    if not text:
        return []
    step = max(size, (len(text) - size) // max(1, count))
    out = []
    for start in range(0, len(text), step):
        piece = text[start:start + size]
        if len(piece) > size // 2:
            out.append(piece)
        if len(out) == count:
            break
    return out


def _module_file(module: str, relative: str) -> str:
    import importlib

    base = Path(importlib.import_module(module).__file__).parent
    try:
        return (base / relative).read_text(encoding="utf-8")
    except OSError:
        return ""


def _po_strings(language: str) -> str:
    text = _module_file("django", f"conf/locale/{language}/LC_MESSAGES/django.po")
    return " ".join(m for m in re.findall(r'^msgstr "(.+)"$', text, re.M))


def _description(distribution: str) -> str:
    try:
        return metadata.metadata(distribution).get_payload() or ""
    except Exception:  # noqa: BLE001
        return ""


def held_out_corpus() -> dict[str, list[str]]:
    """Texts the heuristic was not tuned on, cut from files installed with the project."""
    return {
        "english": [c for d in ("celery", "channels", "attrs", "django") for c in _chunks(_description(d), 1500, 2)],
        "code": [c for m, f in (("django", "db/models/query.py"), ("openai", "_base_client.py"),
                                ("asgiref", "sync.py")) for c in _chunks(_module_file(m, f), 2000, 3)],
        "cjk": [c for lang in ("zh_Hans", "ja", "ko") for c in _chunks(_po_strings(lang), 600, 3)],
        "punctuation": [c for m, f in (("drf_spectacular", "validation/openapi_3_0_schema.json"),
                                       ("werkzeug", "debug/shared/style.css")) for c in _chunks(_module_file(m, f), 1500, 3)],
        "other_scripts": [c for lang in ("ru", "el", "ar", "de", "fr") for c in _chunks(_po_strings(lang), 800, 2)],
    }


def accuracy(corpus: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    encoding = tokens.bpe_encoding()
    rows: dict[str, dict[str, float]] = {}
    everything: dict[str, list[float]] = defaultdict(list)
    for kind, texts in corpus.items():
        errors: dict[str, list[float]] = defaultdict(list)
        for text in texts:
            real = len(encoding.encode_ordinary(text))
            if not real:
                continue
            for name, estimate in (("heuristic", tokens.estimate_tokens(text)), ("seed002", seed_002(text))):
                err = abs(estimate - real) / real * 100
                errors[name].append(err)
                everything[name].append(err)
        rows[kind] = {"n": len(errors["heuristic"]),
                      **{f"{name}_{stat}": f(v) for name, v in errors.items()
                         for stat, f in (("mean", statistics.fmean), ("max", max))}}
    rows["ALL"] = {"n": len(everything["heuristic"]),
                   **{f"{name}_{stat}": f(v) for name, v in everything.items()
                      for stat, f in (("mean", statistics.fmean), ("max", max))}}
    return rows


def print_accuracy(title: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}: absolute % error vs cl100k_base")
    print(f"{'kind':<14} {'n':>3} {'heur mean':>10} {'heur max':>9} {'seed002 mean':>13} {'seed002 max':>12}")
    for kind, r in rows.items():
        print(f"{kind:<14} {r['n']:>3} {r['heuristic_mean']:>9.1f}% {r['heuristic_max']:>8.1f}% "
              f"{r['seed002_mean']:>12.1f}% {r['seed002_max']:>11.1f}%")


def timed(fn, text: str, repeat: int) -> float:
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            fn(text)
        best = min(best, (time.perf_counter() - started) / repeat)
    return best * 1e6


def speed() -> None:
    message = message_of(2000)
    encoding = tokens.bpe_encoding()
    ascii_message = message.encode("ascii", "ignore").decode()[:2000]
    print("\nspeed: microseconds per 2,000-character message (best of 5 runs)")
    print(f"  heuristic, cold (no cache), mixed text : {timed(tokens.estimate_tokens, message, 300):8.1f} µs")
    print(f"  heuristic, cold (no cache), ASCII text : {timed(tokens.estimate_tokens, ascii_message, 300):8.1f} µs")
    print(f"  cl100k_base BPE, cold                  : {timed(encoding.encode_ordinary, message, 100):8.1f} µs")
    print(f"  seed 002 formula                       : {timed(seed_002, message, 300):8.1f} µs")
    tokens.count_tokens(message, "gemini-2.5-flash")
    print(f"  count_tokens, cached hit               : {timed(lambda t: tokens.count_tokens(t, 'gemini-2.5-flash'), message, 3000):8.2f} µs")
    print(f"  cache after the run: {tokens.cache_stats()}")


def main() -> None:
    started = time.perf_counter()
    tokens.bpe_encoding()
    print(f"cl100k_base loaded offline in {(time.perf_counter() - started) * 1000:.0f} ms")
    print_accuracy("calibration corpus (tests/providers/token_corpus.py)", accuracy(CORPUS))
    print_accuracy("held-out corpus (files installed in the venv)", accuracy(held_out_corpus()))
    speed()


if __name__ == "__main__":
    main()
