"""Code comments say why in words; measured numbers (timings, p-values, speed-ups, dates) belong in
docs/performance.md and docs/calibration.md, where stale ones are seen and mended (issue 19)."""

import re
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bayesmix"
MEASURED = re.compile(
    r"(?<![\w.-])\d+(\.\d+)? ?(s|ms|sec|seconds|minutes)\b"  # a timing (not an exponent: 1e-7s)
    r"|\bp [<=]? ?0?\.\d+|\bp-value"  # a test's p-value
    r"|\b\d+(\.\d+)?x (faster|slower|the time)"  # a measured ratio
    r"|\b20\d\d-\d\d-\d\d\b"  # a date
)


def comments(path: Path):
    with path.open("rb") as handle:
        for token in tokenize.tokenize(handle.readline):
            if token.type == tokenize.COMMENT:
                yield token.start[0], token.string


def test_no_measurements_in_code_comments():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in comments(path)
        if MEASURED.search(text)
    ]
    assert not found, "\n".join(found)
