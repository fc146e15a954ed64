"""The instance head end to end (``unetseg.instances``): trained, predicted, evaluated and exported."""

from __future__ import annotations

import numpy as np


def test_a_model_with_the_instance_head_trains_predicts_evaluates_and_exports(tmp_path, capsys) -> None:
    """Instance-ID PNGs beside the masks turn the head on (plan: auto); one model file holds both heads and
    ``info`` says so; predict writes the head's instances; ONNX export carries the head's maps."""
    import json

    import onnxruntime as ort
    from PIL import Image

    from tests.fixtures import TINY, assert_one_line_error, run, write_binary_dataset
    from unetseg.core.fileio import write_png
    from unetseg.data.images import read_instance_ids, read_mask_raw
    from unetseg.inference import Engine, ImageDataset, InferenceOptions
    from unetseg.instances.centres import HEAD_CHANNELS, component_ids
    from unetseg.models.modelfile import load_model

    data = write_binary_dataset(tmp_path / "calls", {"train": 12, "valid": 4})
    code, _, err = run(["train", "--data", str(data), "--size", "64", "--epochs", "1", "--runs-dir",
                        str(tmp_path / "runs"), "--no-test", "--instances", "on", *TINY], capsys)
    assert_one_line_error(code, err, "train0.png", "--instances on needs an instance-ID PNG")
    for mask_path in sorted(data.glob("*/masks/*.png")):
        ids = component_ids((read_mask_raw(mask_path) > 0).astype(np.uint8), 2)
        write_png(mask_path.parent.parent / "instances" / mask_path.name, ids)
    code, out, err = run(["train", "--data", str(data), "--size", "64", "--epochs", "1", "--runs-dir",
                          str(tmp_path / "runs"), "--name", "head", "--no-test", *TINY], capsys)
    assert code == 0, err
    model = tmp_path / "runs" / "head" / "weights" / "best.safetensors"
    code, out, _ = run(["info", str(model)], capsys)
    assert code == 0 and json.loads(out)["model"]["instances"] == "on"
    loaded = load_model(model)
    assert loaded.head and loaded.outputs == 1
    images = sorted((data / "valid" / "images").glob("*.png"))
    engine = Engine(loaded, InferenceOptions(backend="torch"))
    for item, probs in engine.run(ImageDataset(images, loaded.input_spec)):
        assert probs.shape == (1, 64, 64) and item["head"].shape == (HEAD_CHANNELS, 64, 64)
        assert float(item["head"][0].min()) >= 0 and float(item["head"][0].max()) <= 1
        assert float(item["head"][1:].min()) >= 0  # edge distances in pixels
    code, _, err = run(["predict", "--model", str(model), "--input", str(data / "valid" / "images"), "--output",
                        str(tmp_path / "pred"), "--instances", "--coco-results", str(tmp_path / "coco.json")], capsys)
    assert code == 0, err
    ids = read_instance_ids(tmp_path / "pred" / "instances" / "valid0.png")
    assert ids.dtype == np.uint16 and Image.open(tmp_path / "pred" / "instances" / "valid0.png").mode.startswith("I")
    results = json.loads((tmp_path / "coco.json").read_text())
    assert all(r["score"] > 0.3 for r in results)  # the head's peaks above its threshold
    from fastapi.testclient import TestClient

    from unetseg.serve import ServeOptions, create_app, load_models

    options = ServeOptions(backend="torch")
    with TestClient(create_app(load_models([model], options), options)) as c:  # the page's objects: the head's
        found = c.post("/predict?format=json&objects=true", content=(images[0]).read_bytes()).json()
    assert found["objects_from"] == "instances"
    assert sorted(o["area"] for o in found["objects"]) == sorted(int((ids == k).sum()) for k in np.unique(ids) if k)
    code, _, err = run(["evaluate", "--model", str(model), "--split", "valid", "--output", str(tmp_path / "ev"),
                        "--figures", "0"], capsys)
    assert code == 0, err
    scored = json.loads((tmp_path / "ev" / "metrics.json").read_text())["instances"]
    assert scored["truth"] == "instance-ID PNGs" and scored["objects"].startswith("the instance head")
    assert scored["truth_objects"] >= 4 and 0 <= scored["box"]["ap50"] <= 1
    code, _, err = run(["export", "--model", str(model), "--output", str(tmp_path / "m.onnx")], capsys)
    assert code == 0, err
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 1, 64, 64), np.float32)
    (out_maps,) = session.run(None, {session.get_inputs()[0].name: x})
    assert out_maps.shape == (1, 1 + HEAD_CHANNELS, 64, 64)


def test_every_architecture_gets_the_head_from_its_last_layer() -> None:
    """Classic U-Net and smp architectures: five more output channels after the class maps, from the same last
    layer (a heatmap starting at its prior, 0.1); the rest of the network is the model without the head."""
    import torch

    from unetseg.instances.centres import HEAD_CHANNELS, HEAT_PRIOR
    from unetseg.models import create_model

    classic = {"arch": "classic", "depth": 2, "base_width": 4, "batch_norm": True, "dropout": 0.0,
               "attention": False}
    torch.manual_seed(0)  # the heat's mean at initialisation depends on the random weights around its bias
    for cfg in (classic, {"arch": "unet", "encoder": "resnet18"}, {"arch": "deeplabv3plus", "encoder": "resnet18"}):
        plain, headed = create_model(cfg, 3, 4).eval(), create_model({**cfg, "instances": "on"}, 3, 4).eval()
        own, theirs = headed.state_dict(), plain.state_dict()
        assert set(own) == set(theirs)
        assert [k for k in own if own[k].shape != theirs[k].shape][-1].endswith("bias")  # the last layer only
        with torch.no_grad():
            out = headed(torch.rand(1, 3, 64, 64))
        assert out.shape == (1, 4 + HEAD_CHANNELS, 64, 64), cfg["arch"]
        last = [m for m in headed.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        assert abs(float(torch.sigmoid(last.bias[4].detach())) - HEAT_PRIOR) < 1e-6  # the bias: the prior
        assert abs(float(torch.sigmoid(out[:, 4]).mean()) - HEAT_PRIOR) < 0.1


def test_flip_averaging_keeps_left_edges_left() -> None:
    """--tta runs flipped copies: flipping back must also swap left/right (top/bottom) edge distances."""
    import torch

    from unetseg.inference.classes import unflip

    def model(x: torch.Tensor) -> torch.Tensor:  # one class map, then heat and the distances to the borders
        n, _, h, w = x.shape
        cols = torch.arange(w, dtype=torch.float32).expand(n, 1, h, w)
        rows = torch.arange(h, dtype=torch.float32)[:, None].expand(n, 1, h, w)
        return torch.cat([x, x, cols, rows, w - 1 - cols, h - 1 - rows], dim=1)

    x = torch.rand(1, 1, 6, 8)
    for dim in (2, 3):
        assert torch.equal(unflip(model(x.flip(dim)), dim, head=1), model(x))
    y = torch.rand(1, 3, 6, 8)
    assert torch.equal(unflip(y, 3), y.flip(3))  # without a head: a plain flip back
