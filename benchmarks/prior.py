"""Rebuild the built-in call prior (``src/unetseg/audio/prior/calls.safetensors``) from scratch: ``make prior``.

1. Synthetic vocalisations (``unetseg audio synth``: whistles, sweeps, harmonic stacks, trills, clicks and
   pulse trains of 1 ms to 2 s, with unboxed broadband transients) in the 14 shared soundscapes at -5 to
   20 dB, at three sample rates, so calls span a few to thousands of spectrogram columns and any share of
   the band.
2. The prior's real recordings: three of the six shared bat recordings (``PRIOR_BATS``), every call boxed.
   The other three, spinetail, field-boxes and the finch songs are kept out: benchmarks/fewshot.py scores
   on them (it refuses a recording listed in the model card).
3. ``unetseg audio dataset --preset prior`` (each file's own rate, n_fft 512, hop 128) with every label
   merged into one class, call; ``unetseg train --instances on --input-norm band --max-time MINUTES``.
4. The best checkpoint goes to the package with ``calls.json`` (the card's data: recordings, command,
   figures, machine) beside ``MODEL_CARD.md``.

    .venv/bin/python benchmarks/prior.py --minutes 25
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PRIOR_DIR = ROOT / "src" / "unetseg" / "audio" / "prior"
BATS = SHARED / "bat-calls-whombat"
PRIOR_BATS = ("XC821730-Rhynchonycteris_naso-2016.02.17-CL01709",
              "XC826219-Pteronotus_mesoamericanus-2013.02.15-CL00816", "XC882096-Diclidurus-albus_ind2")
SYNTH = ((22050, 16, 1), (48000, 16, 2), (192000, 12, 3))  # rate, recordings, seed


def gather(work: Path, cli, synth: tuple) -> list[str]:
    """Synthetic and bat recordings with their tables in ``work/recordings``; the names of the real ones."""
    recordings = work / "recordings"
    for rate, count, seed in synth:
        out = work / f"synth-{rate}"
        assert cli(["audio", "synth", "--output", str(out), "--count", str(count), "--rate", str(rate),
                    "--seconds", "10", "--noise", str(SHARED / "soundscapes"), "--seed", str(seed)]) == 0
    recordings.mkdir()
    for rate, _, _ in synth:
        for wav in sorted((work / f"synth-{rate}").glob("*.wav")):
            (recordings / f"{rate}-{wav.name}").symlink_to(wav)
            (recordings / f"{rate}-{wav.stem}.selections.txt").symlink_to(wav.with_suffix(".selections.txt"))
    for stem in PRIOR_BATS:
        (recordings / f"{stem}.wav").symlink_to(BATS / f"{stem}.wav")
        (recordings / f"{stem}.selections.txt").symlink_to(BATS / f"{stem}.Table.1.selections.txt")
    return [f"bat-calls-whombat/{s}.wav" for s in PRIOR_BATS]


def model_card(card: dict) -> str:
    from unetseg.core.machine import host_features

    f, m, secs = card["figures"], card["machine"], card["wall_seconds"]
    real = "\n".join(f"  - `{r}`" for r in card["training_recordings"]["real"])
    synth = "\n".join(f"  - `unetseg {c}`" for c in card["training_recordings"]["synthetic"])
    return f"""# The built-in call prior (`--model builtin`, `--init builtin`)

A spectrogram U-Net (classic, with the instance head) that marks animal calls of any kind: one class, `call`.
Its input is rate-normalised: the `prior` spectrogram preset keeps each file's own rate (n_fft 512, hop 128),
so rows are shares of the Nyquist frequency and a call spans the same columns whatever the rate of a
recorder that scales with the animal; `input_norm: band` measures every frequency band against its own
background level (each row less its mean over the window), so gain and noise colour do not matter.

## Data
- Synthetic vocalisations (whistles, FM sweeps, harmonic stacks, trills, clicks, pulse trains of 1 ms to 2 s)
  in the 14 shared soundscapes (`../shared/data/soundscapes`) at -5 to 20 dB, with unboxed transients:
{synth}
- Real recordings, every call boxed (`../shared/data`):
{real}
- Kept out, because `benchmarks/fewshot.py` scores on them (the script refuses a recording listed here):
  {", ".join(card["kept_out_for_benchmarks"])}.

## Rebuild
`make prior` (`benchmarks/prior.py --minutes 30 --install`):
- `{card["commands"]["dataset"]}`
- `{card["commands"]["train"]}`

Wall time on {m["cpu_count"]} cores ({m["cpu"]}, {host_features(m)}, torch {m["torch"]}): data {secs["data"]:.0f} s,
training {secs["train"]:.0f} s.

## Figures
On the build's own test split (synthetic and bat windows it did not train on): call IoU {f["test_call_iou"]:.3f}
(precision {f["test_call_precision"]:.3f}, recall {f["test_call_recall"]:.3f}) over {f["test_windows"]} windows;
box F1 of its events on the validation split {f["valid_box_f1"]:.3f} (`detect_tuning.json`). On recordings it
never heard (five shots, zero shots, beside scikit-maad, template matching and batdetect2):
`benchmarks/results/fewshot.json`, summarised in `docs/benchmarks.md`.
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=25.0, help="training time (wall minutes)")
    p.add_argument("--work", default=str(ROOT / "runs" / "build-prior"), help="folder for the data and run (-N "
                   "added when taken)")
    p.add_argument("--synth-count", type=int, help="synthetic recordings per rate (a trial; default: the recipe's)")
    p.add_argument("--install", action="store_true", help="copy the model into the package (src/unetseg/audio/prior)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from unetseg.cli import main as cli
    from unetseg.cli.common import configure_logging
    from unetseg.plan import machine

    configure_logging(False)
    from unetseg.core.fileio import new_run_dir

    work = new_run_dir(Path(args.work).parent, Path(args.work).name)  # never over an earlier build
    t0 = time.perf_counter()
    synth = tuple((r, args.synth_count or n, s) for r, n, s in SYNTH)
    real = gather(work, cli, synth)
    dataset_argv = ["audio", "dataset", "--audio", str(work / "recordings"), "--output", str(work / "dataset"),
                    "--preset", "prior"]
    assert cli(dataset_argv) == 0
    t1 = time.perf_counter()
    train_argv = ["train", "--data", str(work / "dataset"), "--instances", "on", "--input-norm", "band",
                  "--max-time", f"{args.minutes:g}", "--runs-dir", str(work / "runs"), "--name", "prior",
                  "--no-progress"]
    assert cli(train_argv) == 0
    t2 = time.perf_counter()
    run = work / "runs" / "prior"
    test = json.loads((run / "test" / "metrics.json").read_text())
    tuning = json.loads((run / "detect_tuning.json").read_text())
    figures = {"test_windows": test["images"], "test_call_iou": test["per_class"]["call"]["iou"],
               "test_call_precision": test["per_class"]["call"]["precision"],
               "test_call_recall": test["per_class"]["call"]["recall"],
               "valid_box_f1": tuning["f1"], "valid_box_f1_settings": {k: tuning[k] for k in
                                                                       ("threshold", "peak_threshold", "granularity")}}
    card = {
        "name": "calls", "task": "one class, call: any animal vocalisation a person would box",
        "training_recordings": {"real": real,
                                "synthetic": [f"audio synth --count {n} --rate {r} --seconds 10 --noise "
                                              f"soundscapes --seed {s}" for r, n, s in synth]},
        "kept_out_for_benchmarks": ["bat-calls-whombat (the other three)", "bird-audio/spinetail", "field-boxes",
                                    "bird-audio/bengalese-finch-gy6or6"],
        "commands": {k: " ".join(["unetseg", *argv]).replace(str(work), "<work>")
                     for k, argv in (("dataset", dataset_argv), ("train", train_argv))},
        "rebuild": "make prior", "wall_seconds": {"data": round(t1 - t0, 1), "train": round(t2 - t1, 1)},
        "figures": figures, "machine": {**machine(), "cpu_count": os.cpu_count()},
    }
    (work / "calls.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))
    (work / "MODEL_CARD.md").write_text(model_card(card))
    if args.install:
        PRIOR_DIR.mkdir(exist_ok=True)
        shutil.copyfile(run / "weights" / "best.safetensors", PRIOR_DIR / "calls.safetensors")
        shutil.copyfile(work / "calls.json", PRIOR_DIR / "calls.json")
        shutil.copyfile(work / "MODEL_CARD.md", PRIOR_DIR / "MODEL_CARD.md")
        print(f"installed {PRIOR_DIR / 'calls.safetensors'}", file=sys.stderr)


if __name__ == "__main__":
    main()
