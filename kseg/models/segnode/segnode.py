"""SegNode (Khoshsirat & Kambhamettu, "Semantic Segmentation using Neural Ordinary
Differential Equations"): HRNet's four-branch module as the derivative of a neural ODE."""

from __future__ import annotations

import keras

from kseg.layers.conv import conv_norm_act, stride_padding
from kseg.layers.hrnet import NORMS, concat_branches, hr_layer1, hr_module, hr_stem, strided_chain
from kseg.layers.norm import TORCH_BATCH_NORM
from kseg.layers.ocr import ocr_head
from kseg.layers.resize import ResizeLike
from kseg.models.base import ODEModel, SegmentationModel, image_input
from kseg.models.hrnet.hrnet import (
    INPUT_MULTIPLE,
    TORCH_ARGUMENTS,
    branch_channels,
    check_head,
    classification_head,
    imagenet_normalize,
    upsample_logits,
)
from kseg.models.hrnet.hrnet_torch import keras_weights
from kseg.ode import ODEBlock, SolverConfig

ODE_LAYER = "segnode_ode"
# Section 4.1: "the Runge-Kutta ODE solver provided by [torchdiffeq]" and its adjoint
# method: torchdiffeq's rk4 (3/8 rule), here on two steps of the interval. Neither the
# steps nor a tolerance is given; docs/deviations.md says why this reading.
SOLVER = SolverConfig("rk4", steps=2, gradient="adjoint")
# The layers SegNode shares with HRNetV2 (its stem and stage 1, section 4.1, and the
# first transition, whose two branches are how SegNode's state0 and state1 are made), by
# the prefix of their names in each: where HRNet's PyTorch weights go (`torch_weights`).
HRNET_LAYERS = {
    "hrnet_stem": "stem",
    "hrnet_layer1_": "layer1_",
    "hrnet_transition1_0_": "state0_",
    "hrnet_transition1_1_1_": "state1_1_",
}


def hr_ode_function(
    channels: list[int],
    modules: int = 2,
    blocks: int = 2,
    norm: str = "batch",
    padding: str = "same",
) -> keras.Model:
    """The derivative of SegNode's ODE: `modules` residual-form HRNet modules in sequence
    (`kseg.layers.hrnet.hr_module(preact=True)`), four streams in, four out."""
    inputs = [keras.Input((None, None, c), name=f"stream{i}") for i, c in enumerate(channels)]
    xs = inputs
    for m in range(modules):
        xs = hr_module(
            xs, blocks, preact=True, norm=NORMS[norm], padding=padding, name=f"module{m + 1}"
        )
    return keras.Model(inputs, xs, name="segnode_function")


@keras.saving.register_keras_serializable(package="kseg")
class SegNode(ODEModel, SegmentationModel):
    """SegNode (Fig. 1, sections 3.2 and 4.1): stem, four convs creating the four stream
    states, an ODE block whose derivative is HRNet's module, four 1x1 convs to classes,
    bilinear upsampling and sum.

    - Stem: two stride-2 3x3 convs to 1/4 (section 4.1), followed by HRNet's stage 1
      (four bottlenecks to 256 channels) as in HRNetV2, whose design SegNode adopts.
    - Stream states: for branch i a 3x3 conv-BN-ReLU, through i stride-2 3x3 convs (the
      form of HRNet's fuse and transition layers) to `width * 2**i` channels at 1/2**(i+2).
    - ODE block: dh/dt = f(h) on [0, `t1`], f = `modules` (two, section 4.1) residual-form
      HRNet modules, each `blocks` pre-activation basic blocks per branch and fusion
      (`kseg.layers.hrnet`); autonomous (no time input), as the paper turns the Baseline's
      residual units h + module(h) into the ODE. Solved by rk4 on two steps, torchdiffeq's
      Runge-Kutta solver that the paper names, and trained by the adjoint method on that
      grid (`kseg.ode.grid_adjoint`), as the paper trains with torchdiffeq's adjoint.
    - Head: a 1x1 conv per stream to classes, bilinear to 1/4, summed, bilinear to the
      image. With `ocr`, HRNetV2+OCR's head on the concatenated streams instead.

    With W48, two modules of two blocks, 19 classes: 21.4M parameters, Table 2 says 20.9M.
    The two readings above (stage 1 in the stem, stride-2 chains from 256 channels) are what
    bring the count there; single convs from the 64-channel stem would give 18.2M.

    Args:
        num_classes: number of classes.
        width: channels of the highest-resolution stream (48).
        modules, blocks: HRNet modules in the ODE function and basic blocks per branch.
        solver: the ODE solve and how training differentiates it, a
            `kseg.ode.SolverConfig` or a dict of its fields (None: `SOLVER`, rk4 on two
            steps with the adjoint; a dict's missing fields are `SolverConfig`'s, whose
            method is dopri5); `set_solver` changes it on a trained model.
        t1: the end of the integration interval [0, t1].
        norm: "batch" (HRNet's) or "group" normalisation inside the ODE function.
        ocr: the OCR head (SegNode+OCR of Table 1); outputs `{"logits", "aux_logits"}`.
        head: "segmentation", or "classification": HRNet's ImageNet head on the four
            streams (`kseg.models.hrnet.classification_head`), for the ImageNet
            pre-training of section 4.1 (`python -m kseg.recipes.imagenet`).
        convention: "keras" or "pytorch", as `HRNetV2`'s: "pytorch" pads the stride-2 convs
            on every side and normalises the image as HRNet's PyTorch code, so that HRNet's
            ImageNet weights (`--init-from hrnetv2_w48_imagenet_pretrained.pth`) give the
            stem, stage 1, state0 and state1 the features they give in HRNetV2.
        image_shape: (height, width, channels); height and width multiples of 32 or None.

    Example:
        >>> model = SegNode(num_classes=19)
        >>> model.set_solver("rk4", steps=4)  # a finer grid at test time
        >>> SegNode(solver={"method": "dopri5", "rtol": 1e-3})  # adaptive, kseg's adjoint
    """

    # What a run that starts from scratch is told (`Runner.train_stage`).
    pretraining = (
        "SegNode was pre-trained on ImageNet (Khoshsirat & Kambhamettu, section 4.1): "
        "`python -m kseg.recipes.imagenet train --model segnode` pre-trains it, and "
        "--init-from that run's best.keras starts from it (--init-from "
        "hrnetv2_w48_imagenet_pretrained.pth gives its stem, stage 1, state0 and state1 "
        "HRNet's ImageNet weights)"
    )

    def __init__(
        self,
        num_classes: int = 19,
        width: int = 48,
        modules: int = 2,
        blocks: int = 2,
        solver: SolverConfig | dict | None = None,
        t1: float = 1.0,
        norm: str = "batch",
        ocr: bool = False,
        head: str = "segmentation",
        convention: str = "keras",
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
        channels = branch_channels(width)
        padding = stride_padding(convention)

        # === Functional Model ===
        name = f"segnode{check_head(head, ocr)}"
        name, inputs = image_input(kwargs, name, num_classes, image_shape, INPUT_MULTIPLE)
        x = imagenet_normalize(inputs, "normalize") if convention == "pytorch" else inputs
        x = hr_layer1(hr_stem(x, padding=padding, name="stem"), name="layer1")
        states = [conv_norm_act(x, channels[0], 3, norm=TORCH_BATCH_NORM, name="state0")]
        for i in range(1, 4):
            states.append(strided_chain(x, channels[i], i, padding=padding, name=f"state{i}"))
        block = ODEBlock(
            hr_ode_function(channels, modules, blocks, norm, padding),
            t1=t1,
            solver=SOLVER if solver is None else solver,
            name=ODE_LAYER,
        )
        xs = block(states)
        if head == "classification":
            outputs = classification_head(xs, num_classes, padding)
        elif ocr:
            logits, aux = ocr_head(concat_branches(xs, name="head_concat"), num_classes)
            outputs = {
                "logits": upsample_logits(logits, "head_logits"),
                "aux_logits": upsample_logits(aux, "head_aux_logits"),
            }
        else:
            outputs = upsample_logits(_streams_to_logits(xs, num_classes), "head_logits")
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config === (the solver is the ODE block's: `ODEModel.solver`)
        self.input_multiple = INPUT_MULTIPLE
        self.task = head  # HEADS are the task names
        self._store_config(locals())

    @staticmethod
    def torch_arguments(names) -> dict:
        """Built as HRNet's PyTorch code computes (`HRNetV2.torch_arguments`)."""
        return dict(TORCH_ARGUMENTS)

    @staticmethod
    def torch_weights(state: dict) -> tuple[dict, list[str]]:
        """HRNet's PyTorch state dict (`HRNetV2.torch_weights`) under SegNode's names where
        SegNode has the layer (`HRNET_LAYERS`); `init_from` reports the rest unused."""
        converted, unused = keras_weights(state)
        renamed = {}
        for path, value in converted.items():
            prefix = next((p for p in HRNET_LAYERS if path.startswith(p)), None)
            renamed[HRNET_LAYERS[prefix] + path[len(prefix) :] if prefix else path] = value
        return renamed, unused


def _streams_to_logits(xs, num_classes: int):
    """Fig. 1's head: a 1x1 conv per stream to classes, bilinear to 1/4, summed."""
    logits = [
        keras.layers.Conv2D(num_classes, 1, name=f"head_classifier{i}")(x) for i, x in enumerate(xs)
    ]
    ups = [logits[0]] + [
        ResizeLike(name=f"head_up{i}")([y, xs[0]]) for i, y in enumerate(logits) if i
    ]
    return keras.layers.Add(name="head_sum")(ups)
