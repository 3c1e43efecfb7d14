"""Time ssemedic's text redaction on large text, with and without the
literal gates that let a pattern run only where it could match.

Usage: .venv/bin/python scripts/bench_redact.py [--mib 1] [--repeat 5]

The texts are what a stream's summary redacts at its end: the kept answer,
up to 1 Mi characters (the kept-text cap). Three kinds: a token stream
("token token ..."), prose with colons and equals signs (markdown, code),
and JSON-like text. "gated" is ``redact_text`` as ssemedic runs it;
"every pattern" applies the same compiled patterns, in the same order,
to the whole text whatever it holds (how redaction ran before the gates).
Both must give the same output, which is checked. The best of ``--repeat``
runs is shown. A measurement, not a test: it exits 0 unless the outputs differ.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections.abc import Callable

from ssemedic.files import redact as R


def every_pattern(text: str) -> str:
    text = R._TEXT_USERINFO.sub(R._text_userinfo, text)
    text = R._TEXT_PARAM.sub(R._text_param, text)
    text = R._TEXT_COOKIE.sub(R._text_cookie, text)
    text = R._redact_fields(text)
    text = R._TEXT_BEARER.sub(R._text_bearer, text)
    return R._KEY.sub(R._KEY_TEXT, text)


def texts(size: int) -> dict[str, str]:
    rng = random.Random(1)
    words = ["the", "model", "answer", "is", "value", "token", "Привет", "🌍", "result", "a", "of"]
    prose_bits = words + ["Note:", "x = 1;", "**Step 2:**", "key: value", "see https://example.com/a?b=c#d"]
    def fill(pick: Callable[[], str]) -> str:
        out: list[str] = []
        n = 0
        while n < size:
            piece = pick()
            out.append(piece)
            n += len(piece) + 1
        return " ".join(out)[:size]
    return {
        "tokens": fill(lambda: "token"),
        "prose": fill(lambda: rng.choice(prose_bits)),
        "json-like": fill(lambda: f'{{"{rng.choice(words)}": {rng.randint(0, 999)}, "text": "{rng.choice(words)}"}},'),
    }


def best(fn: Callable[[str], str], text: str, repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(text)
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--mib", type=float, default=1.0, help="characters per text, in Mi (default 1)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (default 5)")
    args = ap.parse_args()
    print(f"Python {platform.python_version()}, {platform.platform()}, best of {args.repeat} runs")
    print(f"{'text':<10} {'chars':>10} {'gated s':>9} {'every pattern s':>16} {'ratio':>7}")
    for name, text in texts(int(args.mib * (1 << 20))).items():
        gated, a = best(R.redact_text, text, args.repeat)
        full, b = best(every_pattern, text, args.repeat)
        if a != b:
            print(f"{name}: the gated output differs from every pattern's", file=sys.stderr)
            return 1
        print(f"{name:<10} {len(text):>10,} {gated:>9.3f} {full:>16.3f} {full / gated:>6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
