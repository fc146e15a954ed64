"""Which split a recording's windows go to.

Three or more recordings with 30 or more boxes are split by recording (``split_recordings``): no recording feeds
two splits. With fewer (a field recording and its few boxes, five shots in each of a few recordings), each
recording is split in time instead (``TimeSplit``): its
first part trains, the next validates, the last tests, and a window that would straddle two parts is left
out, so no stretch of sound feeds two splits. A partly annotated recording (``until-last-box``) yields windows
only up to the end of its last box: what follows was not looked at, so it is not trained as background; when
that part is shorter than one window, it is repeated to fill one (``fill_window``), which trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unetseg.audio.annotations import Event
from unetseg.audio.spectrogram import SpectrogramMapping

MIN_RECORDINGS = 3  # for a split by recording (one each for train, valid and test)
MIN_BOXES = 30  # for a split by recording: with fewer boxes in all (five shots in each of three recordings), a
# split by recording would train on a third of them


def time_split_reason(recordings: int, boxes: int) -> str | None:
    """Why each recording is split in time rather than the recordings split among train, valid and test;
    None when there are enough recordings and boxes for the latter."""
    if recordings < MIN_RECORDINGS:
        return f"{recordings} recording(s): too few to split by recording"
    if boxes < MIN_BOXES:
        return f"{boxes} boxes in {recordings} recordings: too few to split by recording (at least {MIN_BOXES})"
    return None
ANNOTATED = ("whole", "until-last-box")


def split_recordings(names: list[str], seed: int, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Recording -> split, seeded; every split gets a recording when there are three or more."""
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n = len(order)
    n_test = max(1, round(n * test_fraction)) if n >= MIN_RECORDINGS and test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if n >= MIN_RECORDINGS and val_fraction > 0 else 0
    out = {name: "test" for name in order[:n_test]}
    out.update({name: "valid" for name in order[n_test:n_test + n_val]})
    out.update({name: "train" for name in order[n_test + n_val:]})
    return out


@dataclass(frozen=True)
class TimeSplit:
    """Each recording's first ``1 - val - test`` of its annotated columns trains, the next ``val`` validates
    and the last ``test`` tests."""

    val_fraction: float
    test_fraction: float

    def split_of(self, start: int, stop: int, total: int) -> str | None:
        """The split of a window of columns ``[start, stop)`` of ``total`` annotated columns; None when it
        straddles two parts."""
        valid_from = total * (1 - self.val_fraction - self.test_fraction)
        test_from = total * (1 - self.test_fraction)
        if stop <= valid_from:
            return "train"
        if start >= valid_from and stop <= test_from:
            return "valid"
        if start >= test_from:
            return "test"
        return None


def annotated_columns(events: list[Event], mapping: SpectrogramMapping, columns: int, annotated: str) -> int:
    """How many of a recording's ``columns`` were annotated: all (``whole``), or up to the column that holds the
    end of its last box (``until-last-box``; none without boxes)."""
    if annotated == "whole":
        return columns
    if not events:
        return 0
    end = max(e.end for e in events)
    last = int(np.ceil((end * mapping.sample_rate - mapping.start_sample - mapping.win_length / 2)
                       / mapping.hop_length)) + 1
    return max(0, min(columns, last))


def fill_window(arrays: tuple[np.ndarray, ...], span: int, window: int) -> list[np.ndarray]:
    """Columns ``[0, span)`` of each array repeated to ``window`` columns: a partly annotated recording whose
    annotated part is shorter than one window (a few-shot support clip of a few calls) still gives one training
    window, and nothing unannotated is in it."""
    reps = -(-window // span)
    return [np.tile(a[..., :span], (1,) * (a.ndim - 1) + (reps,))[..., :window] for a in arrays]
