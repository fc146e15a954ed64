"""Tests of ``unetseg.audio.synth``: synthetic calls in a background, with boxes that hold them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fixtures import run, shared
from unetseg.audio.annotations import read_annotations
from unetseg.audio.spectrogram import SpectrogramConfig, spectrogram_image
from unetseg.audio.synth import KINDS, random_species, render_call, synth_recording


def test_every_kind_of_call_lies_in_its_box() -> None:
    rng = np.random.default_rng(0)
    for sr in (22050, 96000, 384000):
        seen = set()
        for k in range(60):
            s = random_species(rng, sr, "sp")
            seen.add(s.kind)
            call, low, high = render_call(s, rng, sr)
            assert 0 <= low < high <= sr / 2 and s.duration[0] <= len(call) / sr <= max(s.duration[1], 8 / sr) + 1e-9
            spectrum = np.abs(np.fft.rfft(call, 1 << 16)) ** 2
            freqs = np.fft.rfftfreq(1 << 16, 1 / sr)
            inside = spectrum[(freqs >= low * 0.8) & (freqs <= high * 1.2)].sum()
            assert inside > 0.8 * spectrum.sum(), (s, k)  # the call's energy is in its box's band
        assert seen == set(KINDS)


def test_a_recording_holds_its_calls_where_its_table_says(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y, events = synth_recording(rng, 44100, 10.0, calls=15)
    assert events and all(0 <= e.begin < e.end <= 10.0 and e.high <= 22050 for e in events)
    assert all(a.end <= b.begin for a, b in zip(events, events[1:], strict=False))  # one call per box
    image, mapping = spectrogram_image(y, 44100, SpectrogramConfig(sample_rate=None, n_fft=1024, hop_length=256))
    columns = np.asarray([mapping.column_time(c) for c in range(image.shape[1])])
    hz = np.asarray(mapping.row_hz)  # of the image's rows, top first
    inside = np.zeros(image.shape, bool)
    for e in events:
        inside[np.ix_((hz >= e.low) & (hz <= e.high), (columns >= e.begin) & (columns <= e.end))] = True
    assert image[inside].mean() > image[~inside].mean() + 20  # the boxes are where the sound is


def test_audio_synth_writes_recordings_and_raven_tables(tmp_path: Path, capsys) -> None:
    noise = sorted(shared("soundscapes").glob("*.wav"))[:1]
    code, out, err = run(["audio", "synth", "--output", str(tmp_path / "s"), "--count", "2", "--rate", "96000",
                          "--seconds", "3", "--noise", str(noise[0])], capsys)
    assert code == 0, err
    tables = sorted((tmp_path / "s").glob("*.selections.txt"))
    assert len(tables) == 2 and all(read_annotations(t) for t in tables)
    code, _, _ = run(["audio", "synth", "--output", str(tmp_path / "s"), "--count", "1"], capsys)
    assert code == 2  # an existing folder is never written into
