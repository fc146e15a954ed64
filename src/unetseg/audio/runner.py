"""``detect_folder``: a recording or a folder of recordings through one Detector, into one output folder.

What ``unetseg audio detect`` runs, and what the server and the benchmarks call: one events table per
recording (Raven, Audacity or CSV), ``events.csv`` of them all with a file column, ``inference.json`` (what
ran, and whether it completed), and optionally denoised WAVs and whole-recording mask PNGs. The folder is
written as predict's is: refused when it holds an earlier run unless ``overwrite``, finished by ``resume``
(same model and settings), locked while written; a multi-process launch shares the recordings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from unetseg.audio.annotations import SUFFIXES, format_csv, read_annotations, write_events
from unetseg.audio.datasets import list_recordings
from unetseg.audio.detect import Detector, check_recordings
from unetseg.core.distributed import Group, launched_group
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import check_output_dir, input_folders, write_mask, write_text
from unetseg.core.output_folder import Plan, finish, output_mode, shared_run

COMBINED = "events.csv"  # every recording's events in one table, with a file column


@dataclass(frozen=True)
class FolderOutputs:
    """What ``detect_folder`` writes beside the events, and how it treats an earlier run in the folder."""

    format: str = "raven"  # raven, audacity or csv
    denoise: str | Path | None = None  # a WAV (one input) or a folder (a folder of inputs)
    save_mask: bool = False
    overwrite: bool = False
    resume: bool = False


@dataclass
class FolderResult:
    output: Path
    events: dict[str, int] = field(default_factory=dict)  # recording name -> events, for the recordings run now
    skipped: int = 0  # recordings a resume found done


def detect_folder(detector: Detector, source: str | Path | list, output: str | Path,
                  outputs: FolderOutputs | None = None, group: Group | None = None,
                  report: Callable[[str], None] | None = None) -> FolderResult:
    """Detect events in ``source`` (a recording, a folder, a glob pattern or a list) into the folder
    ``output``; ``report`` receives one line per recording. Everything (folder, recordings, channel,
    outputs) is checked before anything is written."""
    o = outputs or FolderOutputs()
    if o.format not in SUFFIXES:
        raise UnetsegError(f"unknown events format {o.format!r} (choose {', '.join(SUFFIXES)})")
    mode = output_mode(o.overwrite, o.resume)
    out = check_output_dir(output)
    files = list_recordings(source)
    single = not isinstance(source, list) and Path(source).is_file()
    if o.denoise:
        check_output_dir(Path(o.denoise).parent if single else o.denoise)
    loaded = detector.loaded
    check_recordings(files, detector.cfg, detector.options.channel)
    denoised = {f: (Path(o.denoise) if single else Path(o.denoise) / f"{f.stem}.denoised.wav")
                for f in files} if o.denoise else {}
    targets = {f.name: [*([denoised[f]] if o.denoise else []),
                        *([out / f"{f.stem}.mask.png"] if o.save_mask else []),
                        out / f"{f.stem}{SUFFIXES[o.format]}"] for f in files}  # the events table last
    group = group or launched_group()
    described = detector.describe()
    key = {"model_sha256": loaded.digest, "backend": described["options"]["backend"], "format": o.format,
           "denoise": bool(o.denoise), "save_mask": o.save_mask, "channel": detector.options.channel,
           **{k: described[k] for k in ("decoding", "window", "overlap", "postprocess", "events")}}
    inputs = [*files, *([loaded.path] if loaded.path else [])]
    plan = Plan(targets, inputs, input_folders(source, files), [out / COMBINED])
    result = FolderResult(out)
    with shared_run(group, out, key, plan, mode, described) as done:
        todo = group.shard([f for f in files if f.name not in done])
        for f, found in detector.run_many(todo, denoised.get, o.save_mask):  # the next one's front end runs ahead
            events = [replace(e, file=f.name) for e in found.events]
            if found.mask is not None:
                write_mask(out / f"{f.stem}.mask.png", found.mask, loaded.binary, [list(c) for c in loaded.colours])
            write_events(targets[f.name][-1], events, o.format)
            result.events[f.name] = len(events)
            if report:
                plural = "" if len(events) == 1 else "s"
                report(f"{f}: {len(events)} event{plural} in {found.duration:.1f} s -> {targets[f.name][-1]}")
        group.gather(len(todo))  # every process is done
        result.skipped = len(done)
        if group.main:
            if done and report:
                report(f"{len(done)} recording(s) done before were skipped")
            combined = [replace(e, file=f.name) for f in files for e in read_annotations(targets[f.name][-1])]
            write_text(out / COMBINED, format_csv(combined))
            finish(out, plan, described, key, len(done), inputs=len(files), processes=group.world)
    return result
