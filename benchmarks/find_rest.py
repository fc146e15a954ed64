"""The review page's "find the rest", measured as a person uses it: a recording opened with no model, its
first five calls drawn as boxes, one POST ``/reviews/{name}/find`` (the server's default fine-tuning time),
then the events it adds scored against the rest of the reference table by the few-shot benchmark's protocol
(``fewshot.py``: event F at time IoU >= 0.3, box F1 at time x frequency IoU >= 0.3, one-to-one, pooled)
-> ``benchmarks/results/find_rest.json``, with the wall time from the button to the events.

    .venv/bin/python benchmarks/find_rest.py --sets spinetail,bats
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from fewshot import ROOT, Task, _iou_time, bat_tasks, check_kept_out, pooled_f, spinetail_tasks

from unetseg.audio.annotations import Event
from unetseg.audio.event_scores import box_iou


def find_rest(client: object, task: Task) -> tuple[list[Event], float]:
    """Open ``task``'s recording with no model, draw its shots, find the rest: the events added, and seconds."""
    r = client.post(f"/reviews?name={task.wav.name}&detect=false", content=task.wav.read_bytes())
    r.raise_for_status()
    name = r.json()["name"]
    for e in task.shots:
        client.post(f"/reviews/{name}/events", json={"begin": e.begin, "end": e.end, "low": e.low,
                                                     "high": e.high, "label": "call"}).raise_for_status()
    start = time.perf_counter()
    client.post(f"/reviews/{name}/find").raise_for_status()
    while not (job := client.get(f"/reviews/{name}/find").json())["done"]:
        time.sleep(1.0)
    seconds = time.perf_counter() - start
    if job["phase"] != "done":
        raise SystemExit(f"{task.wav.name}: the search ended {job['phase']}: {job['error']}")
    events = client.get(f"/reviews/{name}").json()["events"]
    return [Event(e["begin"], e["end"], e["low"], e["high"], e["label"], e["score"]) for e in events
            if e["state"] == "unreviewed"], seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default="spinetail,bats")
    p.add_argument("--minutes", type=float, default=None, help="fine-tuning minutes [default: the server's]")
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "find_rest.json"))
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fastapi.testclient import TestClient

    from unetseg.core.fileio import write_json
    from unetseg.plan import machine
    from unetseg.serve import ServeOptions, create_app, load_models

    makers = {"bats": bat_tasks, "spinetail": spinetail_tasks}
    result = {"protocol": __doc__.split("\n\n")[0], "machine": {**machine(), "cpu_count": os.cpu_count()},
              "sets": {}}
    with tempfile.TemporaryDirectory(prefix="unetseg-find-bench-") as tmp:
        options = ServeOptions(review=Path(tmp) / "reviews", **({"find_minutes": args.minutes} if args.minutes else {}))
        result["find_minutes"] = options.find_minutes
        with TestClient(create_app(load_models(["builtin"], options), options)) as client:
            for name in args.sets.split(","):
                tasks = makers[name]()
                check_kept_out(tasks)
                seconds = []
                for t in tasks:
                    t.predicted["page_find"], s = find_rest(client, t)
                    seconds.append(round(s, 1))
                    print(f"{t.wav.name}: {len(t.predicted['page_find'])} events in {s:.0f} s", flush=True)
                entry = {"recordings": [t.wav.name for t in tasks], "query_boxes": sum(len(t.query) for t in tasks),
                         "event_f": pooled_f(tasks, "page_find", _iou_time),
                         "box_f1": pooled_f(tasks, "page_find", box_iou), "seconds": seconds}
                result["sets"][name] = entry
                print(name, json.dumps(entry), flush=True)
                write_json(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
