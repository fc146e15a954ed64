"""Tests of ``unetseg.audio.annotations``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import assert_one_line_error, run, shared
from unetseg.audio.annotations import format_audacity, format_raven, read_annotations
from unetseg.core.errors import UnetsegError


def test_annotation_formats(birds: Path, tmp_path: Path) -> None:
    spinetail = read_annotations(birds / "spinetail" / "spinetail.txt")  # Audacity with frequency lines
    assert len(spinetail) == 18 and {e.label for e in spinetail} == {"SP", "CRER"}
    assert spinetail[0].low == pytest.approx(6441.064453) and spinetail[0].high == pytest.approx(12296.577148)
    finch = read_annotations(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv")  # onset/offset CSV
    assert len(finch) == 601 and finch[0].low is None and finch[0].file.endswith(".cbin")
    plain = tmp_path / "plain.txt"  # Audacity without frequency lines
    plain.write_text("0.5\t1.25\tsong\n2\t2.5\tcall\n")
    assert [(e.begin, e.end, e.label, e.low) for e in read_annotations(plain)] == [(0.5, 1.25, "song", None),
                                                                                   (2.0, 2.5, "call", None)]
    raven = tmp_path / "r.selections.txt"
    raven.write_text(format_raven(spinetail[:3]))
    again = read_annotations(raven)
    assert [(e.label, round(e.begin, 3), round(e.high, 0)) for e in again] == \
           [(e.label, round(e.begin, 3), round(e.high, 0)) for e in spinetail[:3]]
    audacity = tmp_path / "a.txt"
    audacity.write_text(format_audacity(spinetail[:3]))
    assert [round(e.low, 1) for e in read_annotations(audacity)] == [round(e.low, 1) for e in spinetail[:3]]
    species = tmp_path / "species.selections.txt"  # any label column
    species.write_text("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t"
                       "Species\n1\tSpectrogram 1\t1\t0.1\t0.4\t1000\t4000\tWren\n")
    assert read_annotations(species)[0].label == "Wren"
    bad = tmp_path / "bad.csv"
    bad.write_text("name,when,until\nx,1,2\n")
    with pytest.raises(UnetsegError, match=r"bad\.csv: no onset/offset columns among name, when, until"):
        read_annotations(bad)


def test_annotation_messages_say_what_is_wrong(tmp_path: Path, capsys) -> None:
    from unetseg.audio.annotations import read_annotations

    cases = {"neg.txt": ("-0.5\t1.0\tSP\n", "negative time"), "nan.txt": ("nan\t1.0\tSP\n", "not a finite number"),
             "inf.csv": ("onset,offset,label\n0.1,inf,SP\n", "not a finite number")}
    for name, (text, needle) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UnetsegError, match=needle):
            read_annotations(tmp_path / name)
    birds = shared("bird-audio")
    src = tmp_path / "rec"
    src.mkdir()
    (src / "spinetail.wav").symlink_to(birds / "spinetail" / "spinetail.wav")
    table = tmp_path / "all.csv"
    table.write_text("file,onset,offset,label\nspinetial.wav,1.0,2.0,SP\n")  # misspelt
    code, _, err = run(["audio", "dataset", "--audio", str(src), "--annotations", str(table), "--output",
                        str(tmp_path / "ds")], capsys)
    assert_one_line_error(code, err, "all.csv", "'spinetial.wav'", "spinetail.wav has no rows")
