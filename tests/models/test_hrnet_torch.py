"""HRNet's PyTorch weights in kseg's HRNets (`kseg.models.hrnet.hrnet_torch`,
`kseg.train.init_from`), against PyTorch's own outputs and timm's names for HRNetV2-W48
(tests/models/torch_fixtures/make_fixtures.py)."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

import kseg
from kseg.errors import UserError
from kseg.models.hrnet.hrnet import TORCH_ARGUMENTS
from kseg.models.hrnet.hrnet_torch import keras_weights
from kseg.train.init_from import init_from
from tests.models.torch_fixtures.torch_state import random_state, write_safetensors

FIXTURES = Path(__file__).parent / "torch_fixtures"
# The small HRNet of reference.npz: widths 4 to 32, one module of one block a stage.
SMALL = {"num_classes": 5, "width": 4, "blocks": 1}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(PyTorch's logits, its images, its weights as a .safetensors file)."""
    ref = np.load(FIXTURES / "reference.npz")
    path = tmp_path_factory.mktemp("hrnet") / "small.safetensors"
    write_safetensors(path, random_state(json.loads(str(ref["shapes"]))))
    return ref["logits"], ref["images"].astype("float32") / 255, str(path)


def test_hrnetv2_built_as_pytorch_computes_gives_pytorchs_logits(reference):
    """Every weight of kseg's HRNetV2 comes from the checkpoint (backbone and
    HRNet-Semantic-Segmentation's head, whose conv bias is folded into its batch norm),
    and built as PyTorch computes (its padding, its input normalisation) the logits are
    PyTorch's to float32 rounding. Built as Keras pads, on the unnormalised image, they
    differ by more than half their range: the convention is needed."""
    logits, images, path = reference
    scale = np.abs(logits).max()
    model = kseg.models.HRNetV2(stage_modules=(1, 1, 1), **SMALL, **TORCH_ARGUMENTS)
    report = init_from(model, path, verbose=False)
    assert len(report["loaded"]) == len(model.weights) and not report["unused"]
    np.testing.assert_allclose(model.predict(images, verbose=0), logits, atol=2e-6 * scale)
    other = kseg.models.HRNetV2(stage_modules=(1, 1, 1), **SMALL)
    init_from(other, path, verbose=False)
    assert np.abs(other.predict(images, verbose=0) - logits).max() > 0.5 * scale


def test_hrnet_ocr_is_built_from_its_checkpoint_as_its_code_computes(tmp_path, capsys):
    """HRNet-OCR's checkpoint (HRNet-Semantic-Segmentation's names, `model.` first): every
    weight of kseg's HRNetV2 with ocr=True comes from it (two conv biases folded into
    batch norms), its names alone make kseg build it as that code computes, with
    aligned-corner upsampling, and the logits and auxiliary logits are PyTorch's to
    float32 rounding. Half-pixel upsampling, the default, moves them."""
    from kseg.train.init_from import source_arguments

    ref = np.load(FIXTURES / "ocr_reference.npz")
    state = random_state(json.loads(str(ref["shapes"])))
    path = str(tmp_path / "hrnet_ocr.safetensors")
    write_safetensors(path, {f"model.{k}": v for k, v in state.items()})
    arguments = source_arguments("hrnetv2_w48_ocr", path)
    assert arguments == {"convention": "pytorch", "align_corners": True}
    assert "(convention='pytorch', align_corners=True)" in capsys.readouterr().out
    assert source_arguments("residual_hrnet", path) == {"convention": "pytorch"}
    images = ref["images"].astype("float32") / 255
    scale = np.abs(ref["logits"]).max()
    outputs = {}
    for corners in (True, False):
        model = kseg.models.HRNetV2(
            stage_modules=(1, 1, 1), ocr=True, **SMALL, **{**arguments, "align_corners": corners}
        )
        report = init_from(model, path, verbose=False)
        assert len(report["loaded"]) == len(model.weights) and not report["unused"]
        outputs[corners] = model.predict(images, verbose=0)
    for key in ("logits", "aux_logits"):
        np.testing.assert_allclose(outputs[True][key], ref[key], atol=2e-6 * scale)
    assert np.abs(outputs[False]["logits"] - ref["logits"]).max() > 0.05 * scale


def test_the_baseline_takes_hrnets_front_and_leaves_its_residual_stage_fresh(reference, capsys):
    """SegNode's Baseline shares HRNetV2's stem and stages 1-3 and head: those load; its
    residual stage 4 stays fresh, and the checkpoint's stage 4 is reported unused."""
    _, _, path = reference
    model = kseg.models.ResidualHRNet(stage_modules=(1, 1), front_blocks=1, modules=1, **SMALL)
    report = init_from(model, path)
    assert report["loaded"] and all(not p.startswith("residual") for p in report["loaded"])
    assert report["missing"] and all(p.startswith("residual") for p in report["missing"])
    assert report["unused"] and all(n.startswith("stage4.") for n in report["unused"])
    assert f"not used ({len(report['unused'])} tensors of {path}): stage4.0" in (
        capsys.readouterr().out
    )


def test_segnode_takes_hrnets_stem_stage_1_and_first_transition(reference, capsys):
    """SegNode's stem, stage 1, state0 and state1 are HRNetV2's stem, stage 1 and first
    transition: built as PyTorch computes (which the checkpoint's names choose), SegNode
    loads exactly those from HRNet's PyTorch weights, and its streams 0 and 1 are the two
    branches HRNetV2 makes from the same checkpoint (whose logits are PyTorch's, above).
    The ODE function, states 2 and 3 and the head stay fresh; the checkpoint's later stages
    and head are reported unused. Built as Keras pads, the streams differ."""
    import keras

    from kseg.train.init_from import source_arguments

    _, images, path = reference
    assert source_arguments("segnode", path) == {"convention": "pytorch"}
    small = {"num_classes": 5, "width": 4, "modules": 1, "blocks": 1}
    segnode = kseg.models.SegNode(**small, convention="pytorch")
    report = init_from(segnode, path)
    shared = ("stem", "layer1_", "state0_", "state1_")
    assert sorted(report["loaded"]) == sorted(w.path for w in segnode.weights
                                              if w.path.startswith(shared))  # fmt: skip
    fresh = ("module", "segnode_ode", "state2_", "state3_", "head")  # ODE function, counters
    assert report["missing"] and all(p.startswith(fresh) for p in report["missing"])
    later = ("transition2", "transition3", "stage", "last_layer")
    assert report["unused"] and all(n.startswith(later) for n in report["unused"])
    assert f"Initialised from {path}: {len(report['loaded'])} of " in capsys.readouterr().out
    hrnet = kseg.models.HRNetV2(stage_modules=(1, 1, 1), **SMALL, **TORCH_ARGUMENTS)
    init_from(hrnet, path, verbose=False)

    def streams(model, names):
        outputs = [model.get_layer(n).output for n in names]
        return keras.Model(model.input, outputs)(images, training=False)

    theirs = streams(hrnet, ["hrnet_transition1_0_relu", "hrnet_transition1_1_1_relu"])
    ours = streams(segnode, ["state0_relu", "state1_1_relu"])
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5 * float(np.abs(b).max()))
    keras_padded = kseg.models.SegNode(**small)
    init_from(keras_padded, path, verbose=False)
    other = streams(keras_padded, ["state0_relu", "state1_1_relu"])
    assert (
        np.abs(np.asarray(other[1]) - np.asarray(theirs[1])).max() > 0.1 * np.abs(theirs[1]).max()
    )


def test_every_tensor_of_hrnet_w48s_imagenet_weights_has_its_place_in_hrnetv2_w48():
    """timm's `hrnet_w48` names (HRNet-Image-Classification's, the ImageNet weights):
    built with the classification head, kseg's `hrnetv2_w48` has a weight of the same
    shape for every tensor and a tensor for every weight, 77.5M parameters as HRNet-W48-C
    (HRNet-Image-Classification's table); the segmentation network takes every tensor but
    the classification head's, and every weight but its own head's gets one."""
    with gzip.open(FIXTURES / "hrnet_w48_names.json.gz", "rt") as f:
        shapes = json.load(f)
    state = {k: np.broadcast_to(np.float32(0), v) for k, v in shapes.items()}
    weights, unused = keras_weights(state)
    converted = {p: a.shape for p, (_, a) in weights.items()}
    assert not unused
    classifier = kseg.models.create_model(
        "hrnetv2_w48", num_classes=1000, head="classification", **TORCH_ARGUMENTS
    )
    assert converted == {w.path: tuple(w.shape) for w in classifier.weights}
    # PyTorch's parameters: kseg's trainable ones and the 4 conv biases folded into batch
    # norms (256 + 512 + 1024 + 2048), 77.5M
    parameters = sum(int(np.prod(v)) for k, v in shapes.items() if "running_" not in k)
    parameters -= sum(1 for k in shapes if k.endswith("num_batches_tracked"))
    trainable = sum(int(np.prod(w.shape)) for w in classifier.trainable_weights)
    assert trainable + 3840 == parameters and round(parameters / 1e6, 1) == 77.5
    model = kseg.models.create_model("hrnetv2_w48", **TORCH_ARGUMENTS)
    ours = {w.path: tuple(w.shape) for w in model.weights}
    assert {p: s for p, s in converted.items() if not p.startswith("cls_")} == {
        p: s for p, s in ours.items() if not p.startswith("head_")
    }


def test_the_imagenet_classifier_gives_pytorchs_logits(tmp_path, monkeypatch):
    """HRNet's ImageNet classifier on the small HRNet (timm's, as HRNet-Image-
    Classification computes it, with PyTorch's weights: classifier_reference.npz): every
    weight loads, the head's conv biases folded into their batch norms, and the class
    logits are PyTorch's to float32 rounding. Its fusions upsample by the nearest
    neighbour there; bilinear ones (the segmentation code's) move the logits by far more."""
    from kseg.models.hrnet import hrnet

    ref = np.load(FIXTURES / "classifier_reference.npz")
    path = tmp_path / "classifier.safetensors"
    write_safetensors(path, random_state(json.loads(str(ref["shapes"]))))
    images, expected = ref["images"].astype("float32") / 255, ref["logits"]

    def classifier():
        model = kseg.models.HRNetV2(
            stage_modules=(1, 1, 1), head="classification", **SMALL, **TORCH_ARGUMENTS
        )
        report = init_from(model, str(path), verbose=False)
        assert len(report["loaded"]) == len(model.weights) and not report["unused"]
        logits = model.predict(images, verbose=0)
        # the logits share a large offset (random weights): what tells classes apart
        return model, logits - logits.mean(axis=1, keepdims=True)

    spread = expected - expected.mean(axis=1, keepdims=True)
    model, logits = classifier()
    np.testing.assert_allclose(logits, spread, atol=1e-4 * np.abs(spread).max())
    assert model.task == "classification" and model.name == "hrnetv2_w4_cls"
    monkeypatch.setattr(hrnet, "fusion_interpolation", lambda *arguments: "bilinear")
    _, bilinear = classifier()
    assert np.abs(bilinear - spread).max() > 100 * np.abs(logits - spread).max()


def test_a_model_without_pytorch_names_is_refused(reference):
    """A PyTorch checkpoint for a family that has no PyTorch names, and a model of
    another family, are refused with one message each."""
    _, _, path = reference
    model = kseg.models.ContextNet(num_classes=5)
    with pytest.raises(UserError, match="PyTorch checkpoints into the HRNets.*contextnet"):
        init_from(model, path)
    hrnet = kseg.models.HRNetV2(stage_modules=(1, 1, 1), width=4, blocks=1, num_classes=3)
    with pytest.raises(UserError, match="hrnetv2_w4: no weight matches contextnet_cn14's"):
        init_from(model, hrnet, verbose=False)


def test_convert_writes_a_keras_file_that_computes_pytorchs_logits(reference, tmp_path, capsys):
    """`python -m kseg.convert`: the trained checkpoint as a .keras file, which reloads and
    gives PyTorch's logits; an existing file is not overwritten, and a checkpoint without
    the head is refused."""
    import keras

    from kseg.convert import main as convert

    def argv(checkpoint, out):
        small = '{"width": 4, "stage_modules": [1, 1, 1], "blocks": 1}'
        return [str(checkpoint), "--model", "hrnetv2_w48", "--num-classes", "5",
                "--model-kwargs", small, "--out", str(out)]  # fmt: skip

    logits, images, path = reference
    out = tmp_path / "hrnet.keras"
    convert(argv(path, out))
    assert f"Wrote {out}" in capsys.readouterr().out
    model = keras.saving.load_model(out, compile=False)
    scale = np.abs(logits).max()
    np.testing.assert_allclose(model.predict(images, verbose=0), logits, atol=2e-6 * scale)
    with pytest.raises(SystemExit):
        convert(argv(path, out))
    assert "exists; kseg does not overwrite it" in capsys.readouterr().err

    state = random_state(json.loads(str(np.load(FIXTURES / "reference.npz")["shapes"])))
    backbone = tmp_path / "backbone.safetensors"
    write_safetensors(backbone, {k: v for k, v in state.items() if "last_layer" not in k})
    with pytest.raises(SystemExit):
        convert(argv(backbone, tmp_path / "backbone.keras"))
    assert "leaves 7 of hrnetv2_w4's weights untrained" in capsys.readouterr().err


def test_a_model_pretrained_as_pytorch_computes_is_fine_tuned_so(tmp_path, capsys):
    """`--init-from` a .keras file of an HRNet built with convention="pytorch" (an
    ImageNet run started from HRNet's weights) or with align_corners builds the fine-tuned
    HRNet the same way, and says so; a file of the default convention, or a model without
    one, changes nothing."""
    from kseg.train.init_from import source_arguments

    small = {"width": 4, "stage_modules": (1, 1, 1), "blocks": 1}
    for convention in ("pytorch", "keras"):
        path = str(tmp_path / f"{convention}.keras")
        kseg.models.HRNetV2(head="classification", convention=convention, **small).save(path)
        assert source_arguments("residual_hrnet", path) == {"convention": convention}
    assert "Built with convention='pytorch', as " in capsys.readouterr().out
    assert source_arguments("contextnet_cn14", path) == {}
    assert "Built" not in capsys.readouterr().out
    path = str(tmp_path / "corners.keras")  # an HRNet-OCR converted from PyTorch
    kseg.models.HRNetV2(convention="pytorch", align_corners=True, ocr=True, **small).save(path)
    arguments = {"convention": "pytorch", "align_corners": True}
    assert source_arguments("hrnetv2_w48_ocr", path) == arguments
    assert "Built with convention='pytorch', align_corners=True, as " in capsys.readouterr().out
