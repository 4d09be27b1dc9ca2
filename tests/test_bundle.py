"""Specification of the bundle contract: what the daemon accepts, and how it refuses the rest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle

from lstm_predictor.daemon.bundle import BundleError, read_bundle, sha256_file
from lstm_predictor.daemon.engine import Engine


def edit_metadata(bundle: Path, **changes: object) -> None:
    path = bundle / "metadata.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_a_complete_bundle_loads_and_predicts(tiny_bundle: Path) -> None:
    bundle = read_bundle(tiny_bundle)
    assert (bundle.symbol, bundle.look_back, bundle.normalisation) == ("TINY3.SA", 60, "window_last")
    window = np.linspace(10.0, 20.0, 60)
    prediction = Engine(bundle).predict(window[None, :])
    # The tiny graph answers the mean of the window divided by its last close.
    assert prediction.prices[0] == pytest.approx(window.mean(), rel=1e-6)
    assert prediction.refs[0] == 20.0


@pytest.mark.parametrize("missing", ["metadata.json", "model.onnx"])
def test_an_incomplete_bundle_is_refused_naming_the_missing_file(tiny_bundle: Path, missing: str) -> None:
    (tiny_bundle / missing).unlink()
    with pytest.raises(BundleError, match=f"{missing} is missing"):
        read_bundle(tiny_bundle)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        read_bundle(tmp_path / "nowhere")


def test_an_onnx_file_that_does_not_match_its_sha256_is_refused(tiny_bundle: Path) -> None:
    with open(tiny_bundle / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="does not match its recorded sha256"):
        read_bundle(tiny_bundle)


@pytest.mark.parametrize("text", ["{not json", '{"files": ' + "[" * 100_000 + "]" * 100_000 + "}"])
def test_metadata_that_is_not_json_is_refused(tiny_bundle: Path, text: str) -> None:
    (tiny_bundle / "metadata.json").write_text(text)
    with pytest.raises(BundleError, match="not valid JSON"):
        read_bundle(tiny_bundle)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"normalisation": "global_minmax"}, "normalisation 'global_minmax' is unknown"),
        ({"look_back": "60"}, "'look_back' is '60', which is not a int"),
        ({"format_version": 99}, "format_version 99 is not supported"),
        ({"input": {"name": "prices_normalised", "shape": [None, 30, 1]}}, r"input shape \[None, 30, 1\] must be \[batch, 60, 1\]"),
    ],
)
def test_inconsistent_metadata_is_refused_with_the_reason(tiny_bundle: Path, changes: dict, message: str) -> None:
    edit_metadata(tiny_bundle, **changes)
    with pytest.raises(BundleError, match=message):
        read_bundle(tiny_bundle)


def test_a_graph_whose_shape_disagrees_with_the_metadata_is_refused(tmp_path: Path) -> None:
    # metadata consistent with itself (look_back 30) but the graph takes 60 steps
    bundle_dir = make_tiny_bundle(tmp_path / "B", look_back=60)
    edit_metadata(bundle_dir, look_back=30, input={"name": "prices_normalised", "shape": [None, 30, 1]})
    with pytest.raises(BundleError, match=r"input shape \[None, 60, 1\] disagrees with metadata.json \[None, 30, 1\]"):
        Engine(read_bundle(bundle_dir))


def test_a_graph_whose_tensor_names_disagree_with_the_metadata_is_refused(tiny_bundle: Path) -> None:
    edit_metadata(tiny_bundle, output={"name": "price", "shape": [None, 1]})
    with pytest.raises(BundleError, match="output is named 'ratio', metadata.json says 'price'"):
        Engine(read_bundle(tiny_bundle))


def test_a_file_that_is_not_onnx_is_refused(tiny_bundle: Path) -> None:
    (tiny_bundle / "model.onnx").write_bytes(b"garbage")
    edit_metadata(tiny_bundle, files={"model.onnx": {"sha256": sha256_file(tiny_bundle / "model.onnx")}})
    with pytest.raises(BundleError, match="not a loadable ONNX model"):
        Engine(read_bundle(tiny_bundle))


def test_int8_is_served_only_when_its_accuracy_gate_passed(tiny_bundle: Path) -> None:
    shutil.copy(tiny_bundle / "model.onnx", tiny_bundle / "model.int8.onnx")
    sha = sha256_file(tiny_bundle / "model.int8.onnx")
    files = json.loads((tiny_bundle / "metadata.json").read_text())["files"]
    edit_metadata(tiny_bundle, files={**files, "model.int8.onnx": {"sha256": sha, "accuracy_gate": {"passed": False}}})
    with pytest.raises(BundleError, match="no int8 variant that passed its accuracy gate"):
        Engine(read_bundle(tiny_bundle), variant="int8")
    edit_metadata(tiny_bundle, files={**files, "model.int8.onnx": {"sha256": sha, "accuracy_gate": {"passed": True}}})
    assert Engine(read_bundle(tiny_bundle), variant="int8").variant == "int8"


@pytest.mark.parametrize("entry", [None, ["sha256"], "sha256"])
def test_a_files_entry_that_is_not_an_object_is_refused(tiny_bundle: Path, entry: object) -> None:
    edit_metadata(tiny_bundle, files={"model.onnx": entry})
    with pytest.raises(BundleError, match="files: metadata.json 'model.onnx' is .*, which is not a dict"):
        read_bundle(tiny_bundle)


@pytest.mark.parametrize("gate", [True, "passed", None])
def test_an_accuracy_gate_that_is_not_an_object_serves_no_int8(tiny_bundle: Path, gate: object) -> None:
    shutil.copy(tiny_bundle / "model.onnx", tiny_bundle / "model.int8.onnx")
    sha = sha256_file(tiny_bundle / "model.int8.onnx")
    files = json.loads((tiny_bundle / "metadata.json").read_text())["files"]
    edit_metadata(tiny_bundle, files={**files, "model.int8.onnx": {"sha256": sha, "accuracy_gate": gate}})
    assert read_bundle(tiny_bundle).int8_file is None
