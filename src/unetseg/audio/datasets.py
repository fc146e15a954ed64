"""Recordings -> image datasets that ``unetseg train`` reads.

``build_annotated_dataset``: recordings + annotations -> spectrogram windows with masks painted from the
annotations. ``build_mixture_dataset``: clean recordings + real background recordings -> noisy
spectrogram windows at chosen SNRs with ideal-binary-mask targets, keeping the noisy and clean audio.

Both cut recordings into windows of ``window`` columns with ``overlap`` columns shared (the last window
ends at the recording's end), split by recording so no recording feeds two splits, and write::

    <out>/dataset.yaml                       classes and the spectrogram settings
    <out>/<split>/images/<name>.png          the window's spectrogram
    <out>/<split>/images/<name>.json         its pixel -> time/frequency mapping (and mixture facts)
    <out>/<split>/masks/<name>.png           class-index mask (0/255 for one class)
    <out>/<split>/instances/<name>.png       annotated datasets: instance IDs (16-bit; one per box or syllable)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from unetseg.audio.annotations import Event, check_labels, check_within, events_by_file, read_annotations
from unetseg.audio.masks import events_to_instances, events_to_mask
from unetseg.audio.paste import paste_calls
from unetseg.audio.recordings import AUDIO_EXTENSIONS, audio_info, check_not_silent, load_audio
from unetseg.audio.spectrogram import (
    SpectrogramConfig,
    SpectrogramMapping,
    check_spectrogram_memory,
    spectrogram_image,
    spectrogram_rows,
    stft,
)
from unetseg.audio.spectrogram_plan import AutoSpectrogram, plan_spectrogram
from unetseg.audio.splits import (
    ANNOTATED,
    TimeSplit,
    annotated_columns,
    fill_window,
    split_recordings,
    time_split_reason,
)
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import list_inputs, staged_dir, write_json, write_png, write_text
from unetseg.inference.windows import window_starts

log = logging.getLogger(__name__)

ANNOTATION_SUFFIXES = (".selections.txt", ".Table.1.selections.txt", ".txt", ".csv")


def list_recordings(source: str | Path | list) -> list[Path]:
    """A recording, a folder of recordings (subfolders too), a glob pattern or a list -> recordings."""
    return list_inputs(source, AUDIO_EXTENSIONS, "audio files", recursive=True)


def _write_dataset_yaml(out: Path, name: str, classes: list[str], cfg: SpectrogramConfig,
                        extra: dict | None = None) -> None:
    data = {"name": name, "classes": classes, "spectrogram": cfg.to_dict(), **(extra or {})}
    write_text(out / "dataset.yaml", yaml.safe_dump(data, sort_keys=False))


def _write_window(out: Path, split: str, name: str, image: np.ndarray, mask: np.ndarray, binary: bool,
                  sidecar: dict, ids: np.ndarray | None = None) -> None:
    write_png(out / split / "images" / f"{name}.png", image)
    write_png(out / split / "masks" / f"{name}.png", (mask * 255).astype(np.uint8) if binary else mask)
    if ids is not None:  # renumbered 1..n within the window
        values, inverse = np.unique(ids, return_inverse=True)
        write_png(out / split / "instances" / f"{name}.png",
                  (inverse.reshape(ids.shape) + (values[0] != 0)).astype(np.uint16))
    write_json(out / split / "images" / f"{name}.json", sidecar)


def _window_mapping(mapping: SpectrogramMapping, start: int) -> SpectrogramMapping:
    """The mapping of a window that starts ``start`` columns into the recording's image."""
    return SpectrogramMapping(mapping.sample_rate, mapping.start_sample + start * mapping.hop_length,
                              mapping.hop_length, mapping.win_length, mapping.row_hz, mapping.config)


@dataclass
class BuiltDataset:
    root: Path
    classes: list[str]
    windows: dict[str, int]
    recordings: dict[str, str]


def _annotations_for(recording: Path, annotations: Path | None, table: dict[str | None, list[Event]] | None
                     ) -> list[Event]:
    if table is not None:  # one file for many recordings: match its file column by stem
        stems = {Path(k).stem: v for k, v in table.items() if k}
        if None in table and len(table) == 1:
            return table[None]
        return stems.get(recording.stem, [])
    folder = annotations if annotations is not None and annotations.is_dir() else recording.parent
    for suffix in ANNOTATION_SUFFIXES:
        candidate = folder / f"{recording.stem}{suffix}"
        if candidate.is_file():
            return read_annotations(candidate)
    raise UnetsegError(f"{recording}: no annotation file {recording.stem}{{{','.join(ANNOTATION_SUFFIXES)}}} in "
                       f"{folder}")


def _unknown_recordings(table: dict[str | None, list[Event]] | None, files: list[Path]) -> list[str]:
    """File names in a many-recording annotation table that match no recording."""
    if table is None or (None in table and len(table) == 1):
        return []
    stems = {f.stem for f in files}
    return sorted(k for k in table if k and Path(k).stem not in stems)


@dataclass(frozen=True)
class Windows:
    """How recordings are cut into windows (``window`` columns, ``overlap`` shared) and split (``audio.splits``:
    by recording, or in time when there are fewer than three); ``annotated``: ``whole`` recordings, or each
    only ``until-last-box``."""

    window: int = 256
    overlap: int = 64
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    annotated: str = "whole"

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.window:
            raise UnetsegError(f"--overlap {self.overlap} must be smaller than --window {self.window}")
        if self.annotated not in ANNOTATED:
            raise UnetsegError(f"--annotated {self.annotated!r} is not one of {', '.join(ANNOTATED)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise UnetsegError(f"--val-fraction {self.val_fraction:g} and --test-fraction {self.test_fraction:g} "
                               "leave no recording to train on")


@dataclass(frozen=True)
class Labels:
    """What annotations become: ``classes`` (None: one class of every label), boxes filled only on their
    ``energetic`` pixels, the ``channel`` read, and ``noise`` recordings mixed in at ``snrs`` (dB)."""

    classes: list[str] | None = None
    energetic: bool = False
    channel: int | None = None
    noise: str | Path | list | None = None
    snrs: tuple[float, ...] = (10.0, 5.0, 0.0)
    paste: int = 0  # copies of each recording with its calls pasted into its gaps (``audio.paste``)


@dataclass(frozen=True)
class Mixing:
    """Mixtures of clean and background recordings at ``snrs`` (dB); a pixel of the ideal mask needs
    ``local_snr_db`` clean/noise power and ``floor_db`` above the clean row's median; ``keep_audio`` keeps the
    noisy and clean WAVs for SDR."""

    snrs: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0)
    local_snr_db: float = 0.0
    floor_db: float = 6.0
    keep_audio: bool = True


def build_annotated_dataset(recordings: str | Path | list, annotations: str | Path | dict[Path, list[Event]] | None,
                            output: str | Path,
                            cfg: SpectrogramConfig | AutoSpectrogram, windows: Windows | None = None,
                            labels: Labels | None = None) -> BuiltDataset:
    """Recordings + annotations -> a train/valid/test folder dataset of spectrogram windows.

    ``annotations``: one file with a file column covering all recordings (onset/offset CSV), a folder
    holding ``<recording stem>.txt|.csv|.selections.txt``, None for such files beside the recordings, or
    each recording's events (``review.review_annotations``).
    ``classes`` None merges every label into one class; else listed labels become classes 1..N and other
    labels are left out. ``energetic`` keeps only the energetic pixels inside each box.
    ``noise``: background recordings mixed into every recording at each SNR in ``snrs`` (dB) as extra
    copies with the same annotations (as OpenSoundscape's overlay does); backgrounds are split by recording
    like the annotated ones, so test windows meet backgrounds never heard in training.
    """
    w, lab = windows or Windows(), labels or Labels()
    window, overlap, seed, val_fraction, test_fraction = w.window, w.overlap, w.seed, w.val_fraction, w.test_fraction
    classes, energetic, channel, noise, snrs = lab.classes, lab.energetic, lab.channel, lab.noise, lab.snrs
    files = list_recordings(recordings)
    noise_files = list_recordings(noise) if noise is not None else []
    if noise_files and not snrs:
        raise UnetsegError("--noise needs at least one SNR (--snrs)")
    out = Path(output)
    given = annotations if isinstance(annotations, dict) else None  # recording -> events (a review folder's)
    ann = Path(annotations) if annotations and given is None else None
    table = events_by_file(read_annotations(ann)) if ann is not None and ann.is_file() else None
    per_file = {f: given[f] for f in files} if given is not None else {f: _annotations_for(f, ann, table)
                                                                        for f in files}
    unknown = _unknown_recordings(table, files)
    bare = [f for f, evs in per_file.items() if not evs]
    if unknown and bare:  # a misspelt file name: its recording would train as silence
        raise UnetsegError(f"{ann}: rows name recording {unknown[0]!r}, which is not in {recordings}, while "
                           f"{bare[0].name} has no rows ({len(unknown)} unknown name(s)); fix the file column")
    if unknown:
        log.warning("%s: rows of %d recording(s) not in %s left out (first: %s)", ann, len(unknown), recordings,
                    unknown[0])
    for f in bare:
        log.warning("%s: no annotations; its windows have empty masks", f)
    source = ann or (", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
                     if isinstance(recordings, list) else recordings)
    check_labels([e for evs in per_file.values() for e in evs], classes, source)
    names = classes if classes else ["call"]
    planned = None
    if isinstance(cfg, AutoSpectrogram):  # --preset auto: the spectrogram from the recordings and their boxes
        cfg, planned = plan_spectrogram(per_file, {f: audio_info(f).sample_rate for f in files}, cfg)
        log.info("spectrogram plan:\n%s", "\n".join(f"  {c.key} = {c.value}  ({c.reason})" for c in planned))
    with staged_dir(out) as stage:  # renamed to out only when complete
        why = time_split_reason(len(files), sum(len(v) for v in per_file.values()))
        by_time = TimeSplit(val_fraction, test_fraction) if why else None
        if by_time:
            log.info("%s; each is split in time instead (the first %.0f%% trains, then %.0f%% validates, the last "
                     "%.0f%% tests; windows across two parts are left out)", why,
                     100 * (1 - val_fraction - test_fraction), 100 * val_fraction, 100 * test_fraction)
        assignment = ({f.stem: "time" for f in files} if by_time else
                      split_recordings([f.stem for f in files], seed, val_fraction, test_fraction))
        noise_split = split_recordings([f.stem for f in noise_files], seed + 1, val_fraction, test_fraction)
        pools = {s: [f for f in noise_files if noise_split[f.stem] == s and not by_time] or noise_files
                 for s in [*counts_template(), "time"]}
        rng, cache = np.random.default_rng(seed), {}
        counts = counts_template()
        for f in files:
            info = audio_info(f)
            check_spectrogram_memory(round(info.duration * (cfg.sample_rate or info.sample_rate)), cfg, str(f))
            y, sr = load_audio(f, cfg.sample_rate, channel)
            check_not_silent(y, f)
            check_within(per_file[f], len(y) / sr, sr / 2, f, info.sample_rate / 2)
            split = assignment[f.stem]
            given = per_file[f]
            variants: list[tuple[str, np.ndarray, dict, list[Event]]] = [("", y, {}, given)]
            for snr in snrs if noise_files else ():
                background, used = _noise_stream(pools[split], sr, len(y), rng, cache)
                _, _, noisy = mix_at_snr(y, background, snr)
                variants.append((f"_snr{snr:+g}", noisy, {"snr_db": snr, "noise": used}, given))
            # pasted copies: calls into the recording's gaps, within what trains (no call crosses into valid/test)
            reach = max((e.end for e in given), default=0.0) if w.annotated != "whole" else len(y) / sr
            reach *= (1 - val_fraction - test_fraction) if by_time else 1.0
            for k in range(lab.paste):
                pasted, moved = paste_calls(y, sr, given, len(given), rng, reach)
                variants.append((f"_paste{k + 1}", pasted, {"pasted": len(moved) - len(given)}, moved))
            for suffix, audio, facts, evs in variants:
                image, mapping = spectrogram_image(audio, sr, cfg)
                # a recording shorter than one window is repeated to fill one, as a short annotated part is
                starts = window_starts(image.shape[1], window, window - overlap) if image.shape[1] >= window else []
                if not suffix or evs is not given:  # the clean recording's masks hold for its noisy copies
                    mask = events_to_mask(evs, mapping, image.shape, classes, image if energetic else None)
                    ids = events_to_instances(evs, mapping, image.shape, classes, image)
                if not suffix:
                    span = annotated_columns(given, mapping, image.shape[1], w.annotated)
                short = 0 < span < window  # a support clip: repeated to fill one window, which trains
                if short:
                    image, mask, ids = fill_window((image, mask, ids), span, window)
                starts = [0] if short else [s for s in starts if s + window <= span]  # nothing unannotated trains
                if not starts:
                    raise UnetsegError(f"{f}: has no box, so --annotated until-last-box leaves nothing of it; give it "
                                       "boxes or leave it out")
                for s in starts:
                    if short or by_time:
                        split = "train" if short else by_time.split_of(s, s + window, span)
                        if split is None:
                            continue
                    if evs is not given and split != "train":  # pasted copies only train
                        continue
                    sidecar = {"recording": str(f.resolve()), **facts, **_window_mapping(mapping, s).to_dict()}
                    _write_window(stage, split, f"{f.stem}{suffix}_{s:07d}", image[:, s:s + window],
                                  mask[:, s:s + window], classes is None, sidecar, ids[:, s:s + window])
                    counts[split] += 1
        # Time-only annotations (onset/offset) paint whole columns: such models are decoded per column.
        kind = "time" if all(e.low is None and e.high is None for evs in per_file.values() for e in evs) else "box"
        _write_dataset_yaml(stage, out.name, ["background", *names], cfg, {"events": kind})
        if planned:
            write_json(stage / "spectrogram_plan.json", {c.key: {"value": c.value, "reason": c.reason}
                                                         for c in planned})
    return BuiltDataset(out, ["background", *names], counts, assignment)


def counts_template() -> dict[str, int]:
    return {"train": 0, "valid": 0, "test": 0}


def snr_scale(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> float:
    """Gain for ``noise`` so that 10 log10(P_clean / P_noise) = ``snr_db``."""
    p_clean = float(np.mean(clean.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_noise <= 0:
        raise UnetsegError("background recording is silent")
    return float(np.sqrt(p_clean / (p_noise * 10 ** (snr_db / 10))))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``clean + noise`` with the noise scaled to ``snr_db``; when the mixture would pass 0.99 of full scale,
    all three are scaled down alike (the SNR is unchanged). Returns (clean, noise, mixture) as mixed."""
    noise = noise * snr_scale(clean, noise, snr_db)
    noisy = clean + noise
    peak = float(np.abs(noisy).max())
    if peak > 0.99:
        return clean * 0.99 / peak, noise * 0.99 / peak, noisy * 0.99 / peak
    return clean, noise, noisy


def ideal_binary_mask(clean: np.ndarray, noise: np.ndarray, cfg: SpectrogramConfig, sr: int,
                      local_snr_db: float = 0.0, floor_db: float = 6.0) -> np.ndarray:
    """Ideal binary mask (image rows x columns) of a clean signal in additive noise.

    A pixel is 1 where the clean power exceeds the noise power by ``local_snr_db`` (the local SNR
    criterion) and exceeds the clean recording's own median power in that frequency row by ``floor_db``
    (so the clean file's background hiss is not "bird").
    """
    pc = spectrogram_rows(stft(clean, cfg), cfg, sr) ** 2
    pn = spectrogram_rows(stft(noise, cfg), cfg, sr) ** 2
    floor = np.median(pc, axis=1, keepdims=True)
    mask = (pc > pn * 10 ** (local_snr_db / 10)) & (pc > floor * 10 ** (floor_db / 10))
    return mask[::-1].astype(np.uint8)


def _noise_stream(noise_files: list[Path], sr: int, length: int, rng: np.random.Generator,
                  cache: dict[Path, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """``length`` samples of background: shuffled recordings joined end to end from a random offset."""
    pieces, used, total = [], [], 0
    order = [noise_files[i] for i in rng.permutation(len(noise_files))]
    first = True
    while total < length:
        for f in order:
            if f not in cache:
                cache[f] = load_audio(f, sr)[0]
            y = cache[f]
            if first:
                y = y[int(rng.integers(0, max(1, len(y) // 2))):]
                first = False
            pieces.append(y)
            used.append(f.name)
            total += len(y)
            if total >= length:
                break
    return np.concatenate(pieces)[:length], used


def build_mixture_dataset(clean: str | Path | list, noise: str | Path | list, output: str | Path,
                          cfg: SpectrogramConfig, windows: Windows | None = None,
                          mixing: Mixing | None = None) -> BuiltDataset:
    """Mix each clean recording with real background at every SNR in ``snrs``; targets are ideal binary
    masks of the clean signal. Clean and background recordings are each split by recording, so test
    mixtures use birds and backgrounds never seen in training. Noisy and clean audio per mixture are kept
    (``<split>/audio/<mixture>_{noisy,clean}.wav``) for SDR.
    """
    import soundfile as sf

    w, m = windows or Windows(), mixing or Mixing()
    window, overlap, seed, val_fraction, test_fraction = w.window, w.overlap, w.seed, w.val_fraction, w.test_fraction
    snrs, local_snr_db, floor_db, keep_audio = m.snrs, m.local_snr_db, m.floor_db, m.keep_audio
    if cfg.two_sided or cfg.axis != "linear":
        raise UnetsegError("mixtures need a one-sided linear spectrogram (ideal masks are computed per STFT bin)")
    clean_files, noise_files = list_recordings(clean), list_recordings(noise)
    out = Path(output)
    sr = cfg.sample_rate
    if sr is None:
        raise UnetsegError("mixtures need a fixed sample rate in the spectrogram settings")
    with staged_dir(out) as stage:  # renamed to out only when complete
        rng = np.random.default_rng(seed)
        clean_split = split_recordings([f.stem for f in clean_files], seed, val_fraction, test_fraction)
        noise_split = split_recordings([f.stem for f in noise_files], seed + 1, val_fraction, test_fraction)
        pools = {s: [f for f in noise_files if noise_split[f.stem] == s] or noise_files for s in counts_template()}
        cache: dict[Path, np.ndarray] = {}
        counts = counts_template()
        for f in clean_files:
            y, _ = load_audio(f, sr)
            check_not_silent(y, f)
            split = clean_split[f.stem]
            for snr in snrs:
                background, used = _noise_stream(pools[split], sr, len(y), rng, cache)
                y_s, background, noisy = mix_at_snr(y, background, snr)
                image, mapping = spectrogram_image(noisy, sr, cfg)
                mask = ideal_binary_mask(y_s, background, cfg, sr, local_snr_db, floor_db)
                mix = f"{f.stem}_snr{snr:+g}"
                if keep_audio:
                    audio_dir = stage / split / "audio"
                    audio_dir.mkdir(parents=True, exist_ok=True)
                    sf.write(str(audio_dir / f"{mix}_noisy.wav"), noisy.astype(np.float32), sr, subtype="FLOAT")
                    sf.write(str(audio_dir / f"{mix}_clean.wav"), y_s.astype(np.float32), sr, subtype="FLOAT")
                starts = window_starts(image.shape[1], window, window - overlap) if image.shape[1] >= window else []
                if not starts:
                    raise UnetsegError(f"{f}: shorter than one window of {window} columns")
                for s in starts:
                    sidecar = {"recording": str(f.resolve()), "mixture": mix, "snr_db": snr, "noise": used,
                               "local_snr_db": local_snr_db, "floor_db": floor_db,
                               **_window_mapping(mapping, s).to_dict()}
                    _write_window(stage, split, f"{mix}_{s:07d}", image[:, s:s + window], mask[:, s:s + window], True,
                                  sidecar)
                    counts[split] += 1
        _write_dataset_yaml(stage, out.name, ["background", "bird"], cfg, {"mask_mode": "binary"})
        write_json(stage / "mixtures.json", {"snrs": list(snrs), "local_snr_db": local_snr_db, "floor_db": floor_db,
                                           "clean_split": clean_split, "noise_split": noise_split})
    return BuiltDataset(out, ["background", "bird"], counts, clean_split)
