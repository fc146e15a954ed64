"""Tests of ``unetseg.audio.review``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import make_review
from unetseg.audio.annotations import Event, read_annotations
from unetseg.audio.review import Review
from unetseg.core.errors import UnetsegError


def test_a_review_keeps_states_and_exports_the_corrected_table(tmp_path: Path) -> None:
    review = make_review(tmp_path)
    assert review.folder == tmp_path / "reviews" / "song"
    assert [e["state"] for e in review.events] == ["unreviewed"] * 3
    change = review.change("e1", {"begin": 0.25})
    assert change.event["state"] == "corrected" and change.event["detected"]["begin"] == 0.2
    assert not change.overwrote
    review.change("e2", {"state": "deleted"})
    added = review.add({"begin": 2.5, "end": 2.8, "low": 1000.0, "high": 2000.0, "label": "frog"})
    assert added.event["state"] == "added" and added.event["id"] == "e4"
    # a writer that saw an older revision of e1 still wins, and is told so
    assert review.change("e1", {"label": "wren"}, seen=0).overwrote
    again = Review.load(review.folder)  # every change is on disk
    assert again.counts() == {"unreviewed": 1, "accepted": 0, "corrected": 1, "added": 1, "deleted": 1}
    table = read_annotations(review.folder / "song.selections.txt")
    assert [(e.begin, e.label) for e in table] == [(0.25, "wren"), (2.0, "bird"), (2.5, "frog")]
    raven = again.export("raven", deleted=True).splitlines()
    assert raven[0].endswith("\tReview") and [r.split("\t")[-1] for r in raven[1:]] == [
        "corrected", "deleted", "unreviewed", "added"]
    assert len(read_annotations_text(again.export("raven", deleted=True))) == 3  # deleted rows are not read
    csv = again.export("csv").splitlines()
    assert csv[0].endswith(",review") and csv[1].endswith(",corrected")
    assert [e.label for e in again.annotations(reviewed_only=True)] == ["wren", "frog"]
    # a second review of the same name is a new folder: nothing a person made is replaced
    assert make_review(tmp_path).folder.name == "song-2"


def read_annotations_text(text: str) -> list[Event]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.selections.txt"
        path.write_text(text)
        return read_annotations(path)


def test_bad_changes_are_refused_with_one_line(tmp_path: Path) -> None:
    review = make_review(tmp_path)
    for fields, words in [({"begin": 2.0, "end": 1.0}, "not a span inside"), ({"end": 99.0}, "not a span inside"),
                          ({"low": 5000.0}, "band"), ({"low": None}, "both low and high"),
                          ({"high": 20000.0}, "band"), ({"label": "a\tb"}, "label"),
                          ({"state": "maybe"}, "state"), ({"colour": 1}, "unknown event field")]:
        with pytest.raises(UnetsegError, match=words) as e:
            review.change("e1", fields)
        assert "\n" not in str(e.value)
    assert Review.load(review.folder).events[0]["state"] == "unreviewed"  # nothing was saved
    (review.folder / "review.json").write_text("{")
    with pytest.raises(UnetsegError, match="review.json: not a review file"):
        Review.load(review.folder)
