"""Reading audio files into 16 kHz mono float32, and PCM conversions."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common.audio import SAMPLE_RATE, float_to_pcm16, load_audio, pcm16_to_float
from common.errors import AudioError, WspError

CD_RATE = 44_100


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)[np.argmax(spectrum)])


@pytest.fixture
def stereo_cd(tmp_path: Path) -> Path:
    """3 s at 44.1 kHz: a 1 kHz tone on the left channel, silence on the right."""
    left = tone(1000.0, 3.0, CD_RATE, amplitude=0.6)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), CD_RATE, subtype="PCM_16")
    return path


def test_a_cd_quality_stereo_file_becomes_16k_mono(stereo_cd: Path) -> None:
    audio = load_audio(stereo_cd)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size / SAMPLE_RATE == pytest.approx(3.0, abs=1e-3)
    # Channels are averaged: the left channel's 0.6 becomes 0.3 (small ringing allowed at the edges).
    middle = audio[SAMPLE_RATE // 2 : -SAMPLE_RATE // 2]
    assert np.abs(middle).max() == pytest.approx(0.3, abs=0.01)


def test_resampling_keeps_a_tone_at_its_frequency(stereo_cd: Path) -> None:
    audio = load_audio(stereo_cd)
    assert peak_hz(audio) == pytest.approx(1000.0, abs=2.0)


def test_a_16k_mono_file_is_read_unchanged(tmp_path: Path) -> None:
    samples = tone(440.0, 1.0, SAMPLE_RATE)
    path = tmp_path / "mono.wav"
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), samples)


def test_other_formats_and_rates_are_read(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    sf.write(path, tone(500.0, 2.0, 22_050), 22_050)
    audio = load_audio(str(path))
    assert audio.size / SAMPLE_RATE == pytest.approx(2.0, abs=1e-3)
    assert peak_hz(audio) == pytest.approx(500.0, abs=2.0)


def test_start_and_end_cut_the_audio(tmp_path: Path) -> None:
    # A ramp: the value of every sample says where it lies in the file.
    ramp = (np.arange(5 * SAMPLE_RATE) / (5 * SAMPLE_RATE)).astype(np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp, SAMPLE_RATE, subtype="FLOAT")
    cut = load_audio(path, start_s=1.0, end_s=2.5)
    assert cut.size == round(1.5 * SAMPLE_RATE)
    assert cut[0] == pytest.approx(1 / 5) and cut[-1] == pytest.approx(2.5 / 5, abs=1e-4)
    assert load_audio(path, start_s=4.0).size == SAMPLE_RATE
    assert load_audio(path, end_s=0.5).size == SAMPLE_RATE // 2
    assert load_audio(path, end_s=60.0).size == 5 * SAMPLE_RATE  # an end past the file is its end


def test_cutting_works_in_seconds_of_the_original_file(stereo_cd: Path) -> None:
    assert load_audio(stereo_cd, start_s=1.0, end_s=2.0).size == SAMPLE_RATE


@pytest.mark.parametrize(
    ("start_s", "end_s", "message"),
    [(2.0, 1.0, "bad range"), (-1.0, None, "bad range"), (1.0, 1.0, "bad range"), (10.0, None, "no audio")],
)
def test_a_range_outside_the_audio_is_refused(
    stereo_cd: Path, start_s: float, end_s: float | None, message: str
) -> None:
    with pytest.raises(AudioError, match=message):
        load_audio(stereo_cd, start_s=start_s, end_s=end_s)


# -- files that are not usable audio -----------------------------------------------------------------


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="not found") as info:
        load_audio(missing)
    assert str(missing) in str(info.value)


def test_a_directory_is_not_an_audio_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.wav", b""),
        ("notes.wav", "本日のプログラム\n".encode()),
        ("truncated.wav", b"RIFF\x24\x00\x00\x00WAVEfmt "),
        ("random.flac", bytes(range(256)) * 8),
    ],
    ids=["empty", "text", "broken-header", "garbage"],
)
def test_unreadable_files_give_a_clear_audio_error(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert message.startswith("cannot read audio from") and str(path) in message
    assert "\n" not in message
    assert isinstance(info.value, WspError)


def test_a_file_without_samples_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="holds no audio"):
        load_audio(path)


# -- PCM ---------------------------------------------------------------------------------------------


def test_float_to_pcm16_and_back_is_within_one_step() -> None:
    samples = np.random.default_rng(0).uniform(-1, 1, 16_000).astype(np.float32)
    data = float_to_pcm16(samples)
    assert len(data) == 2 * samples.size
    back = pcm16_to_float(data)
    assert back.dtype == np.float32
    inside = np.abs(samples) < 32767 / 32768
    np.testing.assert_allclose(back[inside], samples[inside], atol=0.5 / 32768 + 1e-7)  # rounded
    np.testing.assert_allclose(back, samples, atol=1 / 32768)  # clipped at full scale


def test_pcm16_bytes_read_and_written_back_are_unchanged() -> None:
    data = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert float_to_pcm16(pcm16_to_float(data)) == data


def test_pcm16_is_little_endian_and_clipped() -> None:
    data = float_to_pcm16(np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -7.0], dtype=np.float32))
    assert np.frombuffer(data, "<i2").tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768]
    assert data[2:4] == b"\x00\x40"


def test_pcm16_needs_whole_samples() -> None:
    with pytest.raises(AudioError, match="even number of bytes"):
        pcm16_to_float(b"\x00\x01\x02")
    assert pcm16_to_float(b"").size == 0
