"""Each paper's optimiser and schedule, as a named preset that cites its source.

Presets hold what the papers state; `None` marks what a paper leaves open, which the
recipes fill in (the README lists those choices).
"""

from __future__ import annotations

import dataclasses

import keras

from kseg.train.schedules import PolyDecay, step_schedule


@dataclasses.dataclass(frozen=True)
class TrainingPreset:
    name: str
    source: str  # where the paper states these values
    optimizer: str  # "rmsprop", "sgd", "adam" or "adamw"
    learning_rate: float
    poly_power: float
    epochs: int
    batch_size: int
    aux_weight: float = 0.0  # loss weight of every output but "logits"
    main_weight: float = 1.0  # loss weight of "logits"
    momentum: float = 0.9
    rho: float = 0.9  # RMSprop discounting factor
    epsilon: float = 1e-7
    weight_decay: float | None = None
    # "poly" (PolyDecay over the run) or "plateau": a constant rate that
    # `plateau_callback` divides by 1 / plateau_factor when the validation accuracy stops
    # improving for `plateau_patience` epochs.
    # "step": the rate times step_factor ** (number of `step_epochs` passed).
    schedule: str = "poly"
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    step_epochs: tuple[int, ...] = ()
    step_factor: float = 0.1
    nesterov: bool = False
    dropout: float | None = None  # where a paper states it (a model argument)
    # Classification: which images choose the best epoch, "test" (as the official code of
    # the ODE nets does) or "holdout" (part of the training set, as ChoiceNet); and the
    # training augmentation, "crop_jitter_flip" (ODE nets) or "crop_flip".
    validation: str = "test"
    augmentation: str = "crop_jitter_flip"
    # Segmentation: the training crop (None: the dataset recipe's) and, where a paper
    # validates on centre crops, their size (None: whole images).
    crop: tuple[int, int] | None = None
    eval_crop: tuple[int, int] | None = None

    def make_optimizer(
        self, total_steps: int, steps_per_epoch: int | None = None
    ) -> keras.optimizers.Optimizer:
        """The optimiser with its schedule: poly over `total_steps` steps, plateau, or
        step (needs `steps_per_epoch`)."""
        if self.schedule == "poly":
            schedule = PolyDecay(self.learning_rate, total_steps, power=self.poly_power)
        elif self.schedule == "plateau":
            schedule = self.learning_rate
        elif self.schedule == "step":
            if not steps_per_epoch:
                raise ValueError(
                    f"preset {self.name!r} steps its rate per epoch: give steps_per_epoch"
                )
            schedule = step_schedule(
                self.learning_rate, self.step_epochs, self.step_factor, steps_per_epoch
            )
        else:
            raise ValueError(f"unknown schedule {self.schedule!r}: poly, plateau or step")
        if self.optimizer == "rmsprop":
            return keras.optimizers.RMSprop(
                schedule,
                rho=self.rho,
                momentum=self.momentum,
                epsilon=self.epsilon,
                weight_decay=self.weight_decay,
            )
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(
                schedule,
                momentum=self.momentum,
                nesterov=self.nesterov,
                weight_decay=self.weight_decay,
            )
        if self.optimizer == "adam":
            return keras.optimizers.Adam(schedule, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return keras.optimizers.AdamW(schedule, weight_decay=self.weight_decay)
        raise ValueError(f"unknown optimizer {self.optimizer!r}: rmsprop, sgd, adam or adamw")


PRESETS: dict[str, TrainingPreset] = {
    "contextnet": TrainingPreset(
        name="contextnet",
        source=(
            "Poudel et al. 2018 (ContextNet), section 3.1: RMSprop, discounting 0.9, momentum "
            "0.9, epsilon 1, poly rate 0.045 with power 0.98, up to 1000 epochs; section 2.2.3: "
            "auxiliary loss weight 0.4; section 3: batch size 16"
        ),
        optimizer="rmsprop",
        learning_rate=0.045,
        poly_power=0.98,
        epochs=1000,
        batch_size=16,
        aux_weight=0.4,
        momentum=0.9,
        rho=0.9,
        epsilon=1.0,
    ),
    "hrnetv2": TrainingPreset(
        name="hrnetv2",
        source=(
            "Wang et al. 2019 (HRNetV2), Cityscapes: SGD, learning rate 0.01, momentum 0.9, "
            "weight decay 5e-4, poly power 0.9, batch 12, 120K iterations (484 epochs of "
            "2975 images); SegNode trains its HRNetV2 row like this"
        ),
        optimizer="sgd",
        learning_rate=0.01,
        poly_power=0.9,
        epochs=484,
        batch_size=12,
        momentum=0.9,
        weight_decay=5e-4,
    ),
    "segnode_baseline": TrainingPreset(
        name="segnode_baseline",
        source=(
            "Khoshsirat & Kambhamettu (SegNode), section 4.1, Baseline network: AdamW, weight "
            "decay 0.05, batch 16, poly power 0.9, learning rate 1e-4; epochs: HRNetV2's 484 "
            "(the paper gives none). U-Node and NODEs-UNet: the paper tuned them without "
            "saying how; kseg trains them with this preset"
        ),
        optimizer="adamw",
        learning_rate=1e-4,
        poly_power=0.9,
        epochs=484,
        batch_size=16,
        weight_decay=0.05,
    ),
    "segnode": TrainingPreset(
        name="segnode",
        source=(
            "Khoshsirat & Kambhamettu (SegNode), section 4.1: SGD, learning rate 0.1, "
            "momentum 0.9, no weight decay, poly power 0.9; batch 16 and 484 epochs are the "
            "Baseline's and HRNetV2's (the paper states none for SegNode)"
        ),
        optimizer="sgd",
        learning_rate=0.1,
        poly_power=0.9,
        epochs=484,
        batch_size=16,
        momentum=0.9,
    ),
    "ode_nets": TrainingPreset(
        name="ode_nets",
        source=(
            "Carrara et al. 2019 (ODE Nets), section 5: 200 epochs, SGD momentum 0.9, batch "
            "128, learning rate 0.1 divided by 10 when it plateaus (the official code: on "
            "test accuracy, patience 10), weight decay 1e-4, dropout 0.5"
        ),
        optimizer="sgd",
        learning_rate=0.1,
        poly_power=0.0,
        epochs=200,
        batch_size=128,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="plateau",
        plateau_factor=0.1,
        plateau_patience=10,
        dropout=0.5,
    ),
    "choicenet": TrainingPreset(
        name="choicenet",
        source=(
            "Rayhan et al. (ChoiceNet), section 3.3.1: SGD, batch 128, learning rate 0.001 "
            "for 100 epochs, 0.0001 for the next 100 and 0.00001 for the final 300; the "
            "learning parameters of [13, 14] for the rest: Nesterov momentum 0.9, weight "
            "decay 1e-4; section 3.4.1: dropout 0.5; section 3.1: the best epoch on "
            "held-out training images (5,000 of CIFAR, 10% of SVHN)"
        ),
        optimizer="sgd",
        learning_rate=1e-3,
        poly_power=0.0,
        epochs=500,
        batch_size=128,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        schedule="step",
        step_epochs=(100, 200),
        step_factor=0.1,
        dropout=0.5,
        validation="holdout",
        augmentation="crop_flip",
    ),
    "choicenet_unet": TrainingPreset(
        name="choicenet_unet",
        source=(
            "Rayhan et al. (ChoiceNet), section 3.3.2, the U-Nets of Table 4: Adam, "
            "learning rate 0.001 divided by 10 after every 100 epochs, weight decay 5e-4; "
            "300 epochs and batch 4 are kseg's (the paper trains 'until the network "
            "converged' and gives no batch size)"
        ),
        optimizer="adam",
        learning_rate=1e-3,
        poly_power=0.0,
        epochs=300,
        batch_size=4,
        weight_decay=5e-4,
        schedule="step",
        step_epochs=(100, 200),
        step_factor=0.1,
    ),
}


def _deeplab(dataset: str, cooperative: bool) -> TrainingPreset:
    """Paper 003's DeepLabV3+ and cross cooperative training on PASCAL VOC or Cityscapes."""
    voc = dataset == "voc"
    crop = (513, 513) if voc else (768, 768)
    what = "the cross cooperative network" if cooperative else "the single DeepLabV3+ networks"
    source = (
        f"Ikedo & Hotta 2022 (cross cooperative learning), section 4.2, {what} on "
        f"{'PASCAL VOC 2012' if voc else 'Cityscapes'}: SGD, batch 6, learning rate "
        f"{0.007 if voc else 0.035}; section 4.1: random {crop[0]}x{crop[1]} crops"
        f"{', centre crops for validation' if voc else ''}"
        f"{'; equation 1: loss CE(top) + CE(bottom)' if cooperative else ''}. "
        "Poly power 0.9 and momentum 0.9 are DeepLabV3+'s (Chen et al. 2018), weight "
        "decay 4e-5 DeepLab's training default; "
        f"{50 if voc else 240} epochs are kseg's (DeepLabV3+ trains 30K iterations at "
        "batch 16 on VOC, about 45 epochs, and 90K at batch 8 on Cityscapes, 242 epochs)"
    )
    return TrainingPreset(
        name=f"{'cross_cooperative' if cooperative else 'deeplabv3plus'}_{dataset}",
        source=source,
        optimizer="sgd",
        learning_rate=0.007 if voc else 0.035,
        poly_power=0.9,
        epochs=50 if voc else 240,
        batch_size=6,
        momentum=0.9,
        weight_decay=4e-5,
        main_weight=0.0 if cooperative else 1.0,
        aux_weight=1.0 if cooperative else 0.0,
        crop=crop,
        eval_crop=crop if voc else None,
    )


for _dataset in ("voc", "cityscapes"):
    for _cooperative in (False, True):
        _preset = _deeplab(_dataset, _cooperative)
        PRESETS[_preset.name] = _preset

# The longest registry-name prefix picks the preset; a dict picks it by dataset (None:
# for any other dataset).
_FAMILIES = {
    "contextnet": "contextnet",
    "hrnetv2": "hrnetv2",
    "residual_hrnet": "segnode_baseline",
    "segnode": "segnode",
    "unode": "segnode_baseline",
    "nodes_unet": "segnode_baseline",
    "resnet_gn": "ode_nets",
    "res_ode_net": "ode_nets",
    "ode_only_net": "ode_nets",
    "choicenet": "choicenet",
    "choicenet_unet": "choicenet_unet",
    "res_unet": "choicenet_unet",
    "dense_unet": "choicenet_unet",
    "unet": "choicenet_unet",
    "deeplabv3plus": {
        "voc": "deeplabv3plus_voc",
        "cityscapes": "deeplabv3plus_cityscapes",
        None: "deeplabv3plus_voc",
    },
    "cross_cooperative": {
        "voc": "cross_cooperative_voc",
        "cityscapes": "cross_cooperative_cityscapes",
        None: "cross_cooperative_voc",
    },
}

# HRNet-OCR's auxiliary (soft object region) loss weight, Yuan et al. 2020 section 3.4.
OCR_AUX_WEIGHT = 0.4


def preset_for(model_name: str, dataset: str | None = None) -> TrainingPreset:
    """The preset of the paper that `model_name` (a registry name) comes from, for
    `dataset` where the paper trains differently per dataset (paper 003: VOC or
    Cityscapes); OCR variants add the auxiliary loss of their soft object regions."""
    prefixes = [p for p in _FAMILIES if model_name.startswith(p)]
    if not prefixes:
        raise ValueError(
            f"no training preset for {model_name!r}; presets exist for models starting "
            f"with: {', '.join(_FAMILIES)}"
        )
    family = _FAMILIES[max(prefixes, key=len)]
    if isinstance(family, dict):
        family = family.get(dataset, family[None])
    preset = PRESETS[family]
    if model_name.endswith("_ocr"):
        preset = dataclasses.replace(
            preset,
            aux_weight=OCR_AUX_WEIGHT,
            source=f"{preset.source}; OCR auxiliary loss weight 0.4 (Yuan et al. 2020)",
        )
    return preset
