"""Bird-sound commands, ``unetseg audio ...``: spectrogram, dataset, mix, detect, evaluate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from unetseg.audio.settings import MAX_RATE, DetectOptions, EventOptions
from unetseg.cli import common
from unetseg.cli.common import number
from unetseg.cli.flags import add_dataclass_arguments, dataclass_from_args
from unetseg.core.config import MAX_SEED
from unetseg.core.errors import UnetsegError

WINDOWS, EVENTS = "windows", "events"

SPECTROGRAM = "spectrogram"


def add_spectrogram_args(p: argparse.ArgumentParser) -> None:
    """A preset, then one flag per ``SpectrogramConfig`` setting (its help and bounds from the field)."""
    from unetseg.audio.spectrogram import SpectrogramConfig

    g = p.add_argument_group("spectrogram (a preset, then any setting changed)")
    g.add_argument("--preset", default="default", help="default (22.05 kHz, n_fft 512, hop 128, dB), "
                   "birdsoundsdenoising (the dataset's images exactly), prior (the built-in call prior's: each file's "
                   "own rate, n_fft 512, hop 128; to fine-tune it) or, for audio dataset, auto (rate, hop, "
                   "n_fft and band chosen from the recordings and their boxes, each with its reason)")
    add_dataclass_arguments(g, SpectrogramConfig, SPECTROGRAM)
    g.add_argument("--channel", type=number(int, ge=0, le=1023), default=None,
                   help="channel to read (default: mix to mono)")


def _spectrogram_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The spectrogram settings given as flags, checked as in a file (``--sample-rate 0``: each file's rate)."""
    import dataclasses

    from unetseg.audio.spectrogram import SpectrogramConfig
    from unetseg.core.config import coerce, flag_name

    changes = {}
    for f in dataclasses.fields(SpectrogramConfig):
        value = getattr(args, f"{SPECTROGRAM}.{f.name}", None)
        if value is None:
            continue
        if f.name == "sample_rate" and str(value).strip() == "0":
            changes[f.name] = None
            continue
        changes[f.name] = coerce(SpectrogramConfig, f, value, flag_name(f))
    return changes


def spectrogram_from_args(args: argparse.Namespace, auto: bool = False) -> Any:
    """The spectrogram settings of the flags; ``--preset auto`` (where ``auto`` is allowed: a dataset of
    annotated recordings) leaves the rest to the data (``audio.spectrogram_plan``)."""
    from unetseg.audio.spectrogram import preset

    if args.preset == "auto":
        if not auto:
            raise UnetsegError("--preset auto chooses the spectrogram from annotated recordings: audio dataset only")
        from unetseg.audio.spectrogram_plan import AutoSpectrogram

        return AutoSpectrogram(_spectrogram_changes(args))
    return preset(args.preset, **_spectrogram_changes(args))


def add_audio_commands(sub: argparse._SubParsersAction) -> None:
    audio = sub.add_parser("audio", help="bird sound: spectrograms, datasets, detection, denoising")
    asub = audio.add_subparsers(dest="audio_command", required=True)

    p = asub.add_parser("spectrogram", help="audio -> spectrogram PNG + JSON pixel mapping; optional denoising")
    p.add_argument("--input", required=True, help="an audio file or a folder of them")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--start-sample", type=number(int, ge=0), default=0, help="skip this many samples (after "
                   "resampling)")
    p.add_argument("--duration", type=number(float, gt=0.0), default=None, help="seconds to keep")
    p.add_argument("--mask", help="with --denoise: a mask image of the same STFT (0 = remove)")
    p.add_argument("--denoise", help="write audio with the STFT zeroed where --mask is 0, to this WAV")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_spectrogram_args(p)
    p.set_defaults(func=cmd_spectrogram)

    p = asub.add_parser("dataset", help="recordings + annotations -> a train/valid/test image dataset")
    p.add_argument("--audio", help="a recording or a folder of recordings")
    p.add_argument("--annotations", help="one annotation file for all recordings (with a file column), or a "
                   "folder of <recording>.txt|.csv|.selections.txt (default: beside the recordings)")
    p.add_argument("--review", metavar="DIR", help="instead of --audio/--annotations: a review folder (serve "
                   "--review): its recordings with their corrected events, on the reviewed model's spectrogram "
                   "unless spectrogram flags are given")
    p.add_argument("--reviewed-only", action="store_true", help="with --review: leave out events nobody reviewed "
                   "(default: they count as detected)")
    p.add_argument("--output", required=True, help="new dataset folder")
    p.add_argument("--classes", help="comma-separated labels that become classes 1..N (default: every label "
                   "merged into one class)")
    p.add_argument("--energetic", action="store_true", help="keep only energetic pixels inside each box")
    p.add_argument("--paste", type=number(int, ge=0, le=100), default=0, metavar="N",
                   help="also N copies of each recording with its annotated calls pasted into its gaps at other "
                   "times and gains (few boxes: more positives) [default: 0]")
    p.add_argument("--annotated", default="whole", choices=("whole", "until-last-box"),
                   help="how much of each recording its table covers: the whole recording, or only up to the end of "
                   "its last box (a partly annotated recording: what follows is not trained as background) "
                   "[default: whole]")
    p.add_argument("--noise", nargs="+", help="background recordings or folders: each recording is also mixed "
                   "with them at every SNR of --snrs, keeping its annotations")
    p.add_argument("--snrs", default="10,5,0", help="SNRs in dB of the --noise copies [default: 10,5,0]")
    _window_args(p)
    add_spectrogram_args(p)
    p.set_defaults(func=cmd_dataset)

    p = asub.add_parser("mix", help="clean recordings + background recordings -> a denoising benchmark")
    p.add_argument("--clean", required=True, nargs="+", help="clean recordings or folders")
    p.add_argument("--noise", required=True, nargs="+", help="background recordings or folders")
    p.add_argument("--output", required=True, help="new dataset folder")
    p.add_argument("--snrs", default="-5,0,5,10", help="mixture SNRs in dB, e.g. --snrs=-5,0,5,10 [default: -5,0,5,10]")
    p.add_argument("--local-snr", type=number(float, ge=-60.0, le=60.0), default=0.0,
                   help="ideal mask: clean/noise power ratio (dB) a pixel needs [default: 0]")
    p.add_argument("--floor-db", type=number(float, ge=-60.0, le=120.0), default=6.0,
                   help="ideal mask: dB above the clean recording's median in that row [default: 6]")
    _window_args(p)
    add_spectrogram_args(p)
    p.set_defaults(func=cmd_mix)

    p = asub.add_parser("synth", help="synthetic calls in real backgrounds, with their Raven tables (exact truth)")
    p.add_argument("--output", required=True, help="new folder of recordings and tables")
    p.add_argument("--count", type=number(int, ge=1, le=10000), default=20, help="recordings [default: 20]")
    p.add_argument("--rate", type=number(int, ge=8000, le=MAX_RATE), default=44100,
                   help="sample rate in Hz; calls stay below its Nyquist frequency [default: 44100]")
    p.add_argument("--seconds", type=number(float, ge=1.0, le=600.0), default=10.0,
                   help="length of each recording [default: 10]")
    p.add_argument("--noise", nargs="+", help="background recordings or folders, resampled [default: pink noise]")
    p.add_argument("--seed", type=number(int, ge=0, le=MAX_SEED), default=0, help="[default: 0]")
    p.set_defaults(func=cmd_synth)

    p = asub.add_parser("detect", help="model + recordings -> events (Raven/Audacity/CSV), denoised audio")
    common.add_batch_args(p, "a recording or a folder of recordings", "recordings")
    p.add_argument("--format", default="raven", choices=("raven", "audacity", "csv"), help="[default: raven]")
    p.add_argument("--save-mask", action="store_true", help="also write the whole recording's mask PNG")
    p.add_argument("--denoise", help="denoised WAV (one input) or folder (a folder of inputs)")
    p.add_argument("--review", action="store_true", help="also make a review folder per recording in "
                   "OUTPUT/review, for 'unetseg serve --review OUTPUT/review' (a review made before is kept)")
    add_dataclass_arguments(p.add_argument_group("windows"), DetectOptions, WINDOWS)
    add_dataclass_arguments(p.add_argument_group("events"), EventOptions, EVENTS)
    common.add_postprocess_args(p, skip=("open_px", "close_px", "min_size", "fill_holes", "objects", "peak_threshold"))
    common.add_inference_args(p, skip=("workers", "tile", "tile_overlap", "blend", "tta", "max_memory"))
    p.set_defaults(func=cmd_detect)

    p = asub.add_parser("evaluate", help="event metrics against reference annotations; SDR of denoised audio")
    p.add_argument("--reference", help="reference annotation file")
    p.add_argument("--estimate", help="estimated events (e.g. from audio detect)")
    p.add_argument("--audio", help="the recording (for its duration)")
    p.add_argument("--collar", type=number(float, ge=0.0, le=60.0), default=0.05,
                   help="onset tolerance (s) [default: 0.05]")
    p.add_argument("--ignore-labels", action="store_true", help="match events whatever their labels")
    p.add_argument("--box-iou", type=number(float, gt=0.0, le=1.0), default=0.3,
                   help="time x frequency IoU for a box-level match [default: 0.3]")
    p.add_argument("--clean", help="clean reference audio for SDR")
    p.add_argument("--denoised", help="denoised audio for SDR")
    p.add_argument("--output", help="also write the metrics to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.set_defaults(func=cmd_evaluate)


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=number(int, ge=16, le=65536), default=256, help="columns per image [default: 256]")
    p.add_argument("--overlap", type=number(int, ge=0, le=65535), default=64,
                   help="columns shared by neighbouring images, fewer than --window [default: 64]")
    p.add_argument("--seed", type=number(int, ge=0, le=MAX_SEED), default=0,
                   help="seed of the split by recording [default: 0]")
    p.add_argument("--val-fraction", type=number(float, ge=0.0, lt=1.0), default=0.15,
                   help="share of the recordings in the validation split (of each recording's time when there "
                   "are fewer than three) [default: 0.15]")
    p.add_argument("--test-fraction", type=number(float, ge=0.0, lt=1.0), default=0.15,
                   help="share of the recordings in the test split (of each recording's time when there are "
                   "fewer than three) [default: 0.15]")


def cmd_spectrogram(args: argparse.Namespace) -> int:
    from unetseg.audio.datasets import list_recordings
    from unetseg.audio.spectrogram_files import Cut, write_spectrograms

    cfg = spectrogram_from_args(args)  # every option checked before any file is read
    write_spectrograms(list_recordings(args.input), args.output, cfg, Cut(args.start_sample, args.duration,
                       args.channel), args.mask, args.denoise, args.overwrite)
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from unetseg.audio.datasets import Labels, build_annotated_dataset, list_recordings

    windows = _windows(args)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if classes is not None and (len(classes) > 255 or len(set(classes)) != len(classes) or not all(classes)):
        raise UnetsegError(f"--classes: give 1-255 distinct, non-empty labels (masks are 8-bit), not {len(classes)}")
    noise = [f for src in args.noise for f in list_recordings(src)] if args.noise else None
    labels = Labels(classes, args.energetic, args.channel, noise, _snrs(args.snrs), args.paste)
    if (args.review is None) == (args.audio is None):
        raise UnetsegError("give --audio (with --annotations) or --review")
    if args.review is not None:
        if args.annotations:
            raise UnetsegError("--review brings its own annotations; drop --annotations")
        from unetseg.audio.review_store import dataset_from_review

        cfg = spectrogram_from_args(args, auto=True) if _spectrogram_given(args) else None  # None: the reviewed model's
        built = dataset_from_review(args.review, args.output, labels, windows, cfg, args.reviewed_only)
    else:
        if args.reviewed_only:
            raise UnetsegError("--reviewed-only goes with --review")
        cfg = spectrogram_from_args(args, auto=True)  # checked before any file is read
        built = build_annotated_dataset(args.audio, args.annotations, args.output, cfg, windows, labels)
    print(f"dataset {built.root}: classes {', '.join(built.classes)}; images per split {built.windows}")
    return 0


def _spectrogram_given(args: argparse.Namespace) -> bool:
    """Whether any spectrogram flag (or a preset) was given."""
    return args.preset != "default" or bool(_spectrogram_changes(args))


def _windows(args: argparse.Namespace) -> Any:
    from unetseg.audio.datasets import Windows

    return Windows(args.window, args.overlap, args.seed, args.val_fraction, args.test_fraction,
                   getattr(args, "annotated", "whole"))


def _snrs(text: str) -> tuple[float, ...]:
    try:
        snrs = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UnetsegError(f"--snrs {text!r}: expected comma-separated numbers in dB") from None
    if not all(-60 <= v <= 60 for v in snrs):
        raise UnetsegError(f"--snrs {text!r}: SNRs must lie between -60 and 60 dB")
    return snrs


def cmd_synth(args: argparse.Namespace) -> int:
    from unetseg.audio.datasets import list_recordings
    from unetseg.audio.synth import write_recordings

    noise = [f for src in args.noise for f in list_recordings(src)] if args.noise else None
    written = write_recordings(args.output, args.count, args.rate, args.seconds, noise, args.seed)
    print(f"{len(written)} recordings with their Raven tables in {args.output}")
    return 0


def cmd_mix(args: argparse.Namespace) -> int:
    from unetseg.audio.datasets import Mixing, build_mixture_dataset, list_recordings

    windows = _windows(args)
    snrs = _snrs(args.snrs)
    clean = [f for src in args.clean for f in list_recordings(src)]
    noise = [f for src in args.noise for f in list_recordings(src)]
    built = build_mixture_dataset(clean, noise, args.output, spectrogram_from_args(args), windows,
                                  Mixing(snrs, args.local_snr, args.floor_db))
    print(f"mixtures {built.root}: SNRs {snrs} dB; images per split {built.windows}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    inference, postprocess = common.inference_from_args(args), common.postprocess_from_args(args)
    windows = dataclass_from_args(DetectOptions, args, WINDOWS)
    dataclass_from_args(EventOptions, args, EVENTS)  # checked before the model loads; its tuned defaults below
    common.check_paths(model=args.model, inputs=args.input)
    from unetseg.audio.datasets import list_recordings
    from unetseg.audio.detect import Detector, check_recordings, spectrogram_config, tuned_events
    from unetseg.audio.runner import FolderOutputs, detect_folder
    from unetseg.core.distributed import launched_group
    from unetseg.core.fileio import check_output_dir
    from unetseg.core.output_folder import output_mode
    from unetseg.models.modelfile import load_model

    outputs = FolderOutputs(args.format, args.denoise, args.save_mask, args.overwrite, args.resume)
    output_mode(args.overwrite, args.resume)
    check_output_dir(args.output)
    files = list_recordings(args.input)
    loaded = load_model(args.model)
    check_recordings(files, spectrogram_config(loaded), windows.channel)  # before the engine is built
    group = launched_group()
    event_options = dataclass_from_args(EventOptions, args, EVENTS, defaults=tuned_events(loaded))
    detector = Detector(loaded, windows, common.group_threads(inference, group), postprocess, event_options)
    done = detect_folder(detector, args.input, args.output, outputs, group, report=print)
    if args.review and group.main:
        from unetseg.audio.annotations import SUFFIXES
        from unetseg.audio.review_store import reviews_from_tables

        tables = {f.name: done.output / f"{f.stem}{SUFFIXES[args.format]}" for f in files}
        meta = {"name": loaded.name, "sha256": loaded.digest,
                "path": str(loaded.path.resolve()) if loaded.path else None}  # to train on from it (--init)
        for folder, review in reviews_from_tables(done.output / "review", files, tables, meta,
                                                  detector.cfg.to_dict(), list(loaded.classes)):
            print(f"{folder}: {'new review' if review else 'review kept as it was (not replaced)'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from unetseg.audio.annotations import check_within, read_annotations
    from unetseg.audio.event_scores import (
        average_precision,
        box_scores,
        event_scores,
        false_alarms_per_minute,
        frame_scores,
        sdr,
        segment_error_rate,
    )
    from unetseg.audio.recordings import audio_info, load_audio
    from unetseg.core.fileio import check_output_dir, write_json
    from unetseg.core.guard import check_outputs
    from unetseg.core.output_folder import written_by_us

    report: dict[str, Any] = {}
    if args.output:
        check_output_dir(Path(args.output).parent)
        check_outputs([args.output], [args.reference, args.estimate, args.audio, args.clean, args.denoised],
                      args.overwrite, owned=[args.output] if written_by_us(Path(args.output), "events", "sdr_db")
                      else [])
    if args.reference or args.estimate:
        if not (args.reference and args.estimate):
            raise UnetsegError("event metrics need both --reference and --estimate")
        ref, est = read_annotations(args.reference), read_annotations(args.estimate)
        if args.audio:
            info = audio_info(args.audio)
            duration = len(load_audio(args.audio)[0]) / info.sample_rate
            check_within(ref, duration, info.sample_rate / 2, args.reference)
        else:
            duration = max([e.end for e in ref + est], default=0.0)
        report["events"] = event_scores(ref, est, args.collar, ignore_labels=args.ignore_labels)
        report["boxes"] = box_scores(ref, est, args.box_iou, args.collar, ignore_labels=args.ignore_labels)
        report["average_precision"] = average_precision(ref, est, ignore_labels=args.ignore_labels)
        report["false_alarms_per_minute"] = false_alarms_per_minute(ref, est, duration, args.collar,
                                                                    ignore_labels=args.ignore_labels)
        report["frames"] = frame_scores(ref, est, duration, ignore_labels=args.ignore_labels)
        report["segments"] = segment_error_rate(ref, est, duration, ignore_labels=args.ignore_labels)
        report["reference_events"], report["estimated_events"] = len(ref), len(est)
    if args.clean or args.denoised:
        if not (args.clean and args.denoised):
            raise UnetsegError("SDR needs both --clean and --denoised")
        clean, sr1 = load_audio(args.clean)
        den, sr2 = load_audio(args.denoised)
        if sr1 != sr2:
            den, _ = load_audio(args.denoised, sr1)
        value = sdr(clean, den)
        report["sdr_db"] = value if np.isfinite(value) else None  # JSON has no Infinity
        if not np.isfinite(value):
            report["sdr_note"] = "the denoised audio equals the clean reference: no distortion (SDR infinite)"
    if not report:
        raise UnetsegError("nothing to evaluate: give --reference/--estimate and/or --clean/--denoised")
    print(json.dumps(report, indent=2))
    if args.output:
        write_json(args.output, report)
    return 0

