"""Tiny configurations of every registered model, for the shared model tests and the
export tests: (keyword arguments, image size). ODE models solve on a short fixed grid
here; their adaptive solves are tested in tests/ode and tests/models/test_segnode.py."""

_FIXED = {"solver": {"method": "euler", "steps": 2}}
_HRNET = {"width": 4, "stage_modules": (1, 1, 1), "blocks": 1}
_DEEPLAB = {"backbone_width": 0.125, "head_channels": 8}

TINY = {
    "contextnet_cn14": ({"width_multiplier": 0.25}, (64, 64)),
    "contextnet_cn12": ({"width_multiplier": 0.25}, (32, 64)),
    # cn18 at 64x64 would shrink its deep branch to 1x1, where a bias before a training-mode
    # batch norm is a constant the norm removes: a genuinely zero gradient.
    "contextnet_cn18": ({"width_multiplier": 0.25}, (128, 128)),
    "contextnet_cn124": ({"width_multiplier": 0.25}, (64, 64)),
    "contextnet_cn14_500": ({}, (64, 64)),
    "contextnet_cn14_160": ({}, (64, 64)),
    "contextnet_deep_only": ({"width_multiplier": 0.25}, (64, 64)),
    "contextnet_shallow_only": ({"width_multiplier": 0.25}, (64, 64)),
    "hrnetv2_w48": (_HRNET, (64, 64)),
    "hrnetv2_w48_ocr": (_HRNET, (64, 64)),
    "residual_hrnet": (
        {"width": 4, "modules": 1, "blocks": 1, "stage_modules": (1, 1), "front_blocks": 1},
        (64, 64),
    ),
    "segnode": ({"width": 4, "modules": 1, "blocks": 1, **_FIXED}, (64, 64)),
    "segnode_ocr": ({"width": 4, "modules": 1, "blocks": 1, **_FIXED}, (64, 64)),
    "unode": ({"width": 4, "levels": 2, **_FIXED}, (32, 32)),
    "nodes_unet": ({"width": 4, "levels": 2, **_FIXED}, (32, 32)),
    # Classifiers (Carrara et al.); less dropout than 0.5, so that six steps on four
    # images lower the loss reliably.
    "resnet_gn": ({"width": 8, "stem_width": 8, "blocks": 2, "dropout": 0.1}, (32, 32)),
    "res_ode_net": ({"width": 8, "stem_width": 8, "dropout": 0.1, **_FIXED}, (32, 32)),
    "ode_only_net": ({"width": 8, "dropout": 0.1, **_FIXED}, (32, 32)),
    # ChoiceNet (Rayhan et al.): one module per block, growth 4.
    "choicenet_30": ({"width": 4, "modules": 1, "dropout": 0.1}, (16, 16)),
    "choicenet_37": ({"width": 4, "modules": 1, "dropout": 0.1}, (16, 16)),
    "choicenet_40": ({"width": 4, "modules": 1, "dropout": 0.1}, (16, 16)),
    "unet": ({"width": 4, "levels": 2}, (32, 32)),
    "res_unet": ({"width": 4, "levels": 2}, (32, 32)),
    "dense_unet": ({"width": 8, "levels": 2}, (32, 32)),
    "choicenet_unet": ({"width": 7, "levels": 2}, (32, 32)),
    # DeepLabV3+ (Ikedo & Hotta 2022): one block per ResNet stage, one Xception middle module.
    "deeplabv3plus_resnet101": ({"backbone_depth": (1, 1, 1, 1), **_DEEPLAB}, (64, 64)),
    "deeplabv3plus_xception65": ({"backbone_depth": 1, **_DEEPLAB}, (64, 64)),
    "cross_cooperative": ({"top_depth": 1, "bottom_depth": (1, 1, 1, 1), **_DEEPLAB}, (64, 64)),
}

# Width variants: the graph of a base model at another width (ContextNet's cn14_500 and
# cn14_160 are cn14 at 0.72 and 0.39, Table 4; ChoiceNet-37 and -40 are ChoiceNet-30 at
# growth 81 and 90, Table 1). test_all_models checks that they are exactly that; the
# shared checks and the TFLite conversion then run on the base only.
WIDTH_VARIANTS = {
    "contextnet_cn14_500": ("contextnet_cn14", {"width_multiplier": 0.72}),
    "contextnet_cn14_160": ("contextnet_cn14", {"width_multiplier": 0.39}),
    "choicenet_37": ("choicenet_30", {"width": 81}),
    "choicenet_40": ("choicenet_30", {"width": 90}),
}
CHECKED = sorted(set(TINY) - set(WIDTH_VARIANTS))
