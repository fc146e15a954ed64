"""Tests of ``unetseg.audio.datasets``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.fixtures import run, shared, yaml_load
from unetseg.cli import main


def test_dataset_from_recordings_and_annotations(birds: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "finch"
    code, stdout, err = run(["audio", "dataset", "--audio", str(birds / "bengalese-finch-gy6or6" / "wav"),
                             "--annotations", str(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv"),
                             "--output", str(out)], capsys)
    assert code == 0, err
    splits = {}
    for split in ("train", "valid", "test"):
        images = sorted((out / split / "images").glob("*.png"))
        assert images, split
        splits[split] = {p.stem.rsplit("_", 1)[0] for p in images}
        sidecar = json.loads(images[0].with_suffix(".json").read_text())
        assert {"sample_rate", "row_hz", "first_column_s", "column_s", "recording"} <= set(sidecar)
        assert np.asarray(Image.open(out / split / "masks" / images[0].name)).max() in (0, 255)
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["valid"])  # by recording
    masks = [np.asarray(Image.open(p)) for p in (out / "train" / "masks").glob("*.png")]
    assert 0.05 < np.mean([m.mean() / 255 for m in masks]) < 0.8  # syllables cover part of the time
    # One instance per syllable: its columns are the syllable's (the mask's), its band the energetic rows.
    from unetseg.data.images import read_instance_ids
    from unetseg.instances.centres import instance_boxes

    found = 0
    for p in sorted((out / "train" / "masks").glob("*.png"))[:20]:
        mask, ids = np.asarray(Image.open(p)) > 0, read_instance_ids(out / "train" / "instances" / p.name)
        for box in instance_boxes(ids).values():
            found += 1
            cols = slice(int(box.x0), int(box.x1))
            assert mask[:, cols].all(axis=0).all() and 0 < box.y1 - box.y0 <= mask.shape[0]
    assert found > 20
    spin = tmp_path / "spin"
    code, _, err = run(["audio", "dataset", "--audio", str(birds / "spinetail" / "spinetail.wav"), "--output",
                        str(spin), "--classes", "SP,CRER", "--energetic", "--window", "128", "--overlap", "0"],
                       capsys)
    assert code == 0, err
    values = set()
    for p in (spin / "train" / "masks").glob("*.png"):
        values |= set(np.unique(np.asarray(Image.open(p))).tolist())
    assert values == {0, 1, 2}


def test_mixtures_keep_audio_at_the_requested_snr(birds: Path, tmp_path: Path, capsys) -> None:
    soundscapes = shared("soundscapes")
    clean = sorted((birds / "birdsongrec-bird0" / "Wave").glob("*.wav"))[:3]
    noise = sorted(soundscapes.glob("*.wav"))[:3]
    out = tmp_path / "mix"
    code, _, err = run(["audio", "mix", "--clean", *map(str, clean), "--noise", *map(str, noise), "--output",
                        str(out), "--snrs=-5,10"], capsys)
    assert code == 0, err
    noisy = sorted(out.glob("*/audio/*_snr-5_noisy.wav"))
    assert len(noisy) == 3
    for path in noisy:
        y, _ = sf.read(path)
        c, _ = sf.read(str(path).replace("_noisy", "_clean"))
        snr = 10 * np.log10(np.mean(c**2) / np.mean((y - c) ** 2))
        assert snr == pytest.approx(-5.0, abs=0.01)
    sidecars = [json.loads(p.read_text()) for p in out.glob("*/images/*.json")]
    assert {s["snr_db"] for s in sidecars} == {-5.0, 10.0}
    fg = {s: [] for s in (-5.0, 10.0)}
    for p in out.glob("*/masks/*.png"):
        snr = json.loads((p.parent.parent / "images" / p.with_suffix(".json").name).read_text())["snr_db"]
        fg[snr].append(np.asarray(Image.open(p)).mean() / 255)
    assert np.mean(fg[10.0]) > np.mean(fg[-5.0]) > 0  # louder noise hides more of the bird


def test_dataset_with_background_noise_copies(birds: Path, tmp_path: Path) -> None:
    songs = tmp_path / "songs"
    songs.mkdir()
    for wav in sorted((birds / "bengalese-finch-gy6or6" / "wav").glob("*.wav"))[:3]:
        (songs / wav.name).symlink_to(wav)
    out = tmp_path / "noisy"
    assert main(["audio", "dataset", "--audio", str(songs), "--annotations",
                 str(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv"), "--output", str(out),
                 "--noise", str(shared("soundscapes")), "--snrs", "5,0"]) == 0
    images = sorted(out.glob("*/images/*.png"))
    clean = [p for p in images if "_snr" not in p.name]
    assert len(images) == 3 * len(clean) and clean
    for p in clean:
        for snr in (5, 0):
            song, start = p.stem.rsplit("_", 1)
            copy = p.with_name(f"{song}_snr+{snr}_{start}.png")
            assert json.loads(copy.with_suffix(".json").read_text())["snr_db"] == snr
            for kind in ("masks", "instances"):  # the clean recording's targets hold for its noisy copies
                a, b = (np.asarray(Image.open(p.parent.parent / kind / f.name)) for f in (p, copy))
                assert np.array_equal(a, b), kind
            assert not np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(copy)))
    assert yaml_load(out / "dataset.yaml")["events"] == "time"
    code = main(["audio", "dataset", "--audio", str(songs), "--annotations",
                 str(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv"), "--output",
                 str(tmp_path / "bad"), "--noise", str(shared("soundscapes")), "--snrs", "5,loud"])
    assert code != 0


def test_audio_dataset_with_a_bad_recording_leaves_nothing_and_reruns(tmp_path: Path, capsys) -> None:
    birds = shared("bird-audio")
    src = tmp_path / "rec"
    src.mkdir()
    spinetail = birds / "spinetail"
    (src / "spinetail.wav").symlink_to(spinetail / "spinetail.wav")
    (src / "spinetail.txt").write_text("1.0\t2.0\tSP\n")
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (src / "broken.txt").write_text("0.1\t0.2\tSP\n")
    out = tmp_path / "ds"
    code, _, err = run(["audio", "dataset", "--audio", str(src), "--output", str(out)], capsys)
    assert code == 2 and "broken.wav" in err
    assert not out.exists() and not list(tmp_path.glob(".ds.partial-*"))
    (src / "broken.wav").unlink()
    (src / "broken.txt").unlink()
    code, _, err = run(["audio", "dataset", "--audio", str(src), "--output", str(out)], capsys)
    assert code == 0, err
    assert (out / "dataset.yaml").is_file()
