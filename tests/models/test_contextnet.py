"""ContextNet (Poudel et al. 2018) against the paper's tables and its stated structure."""

import keras
import numpy as np
import pytest

from kseg.models import ContextNet, create_model
from kseg.models.contextnet.contextnet import make_divisible
from kseg.models.contextnet.contextnet_presets import TABLE4_PARAMS_M
from kseg.utils import count_params


@pytest.mark.parametrize("variant", sorted(TABLE4_PARAMS_M))
def test_parameter_count_matches_table4(variant):
    # Table 4: parameters for 19 classes, counted without the training-only aux head.
    model = create_model(f"contextnet_{variant}", num_classes=19, aux_head=False)
    params = count_params(model)
    assert abs(params / (TABLE4_PARAMS_M[variant] * 1e6) - 1) < 0.05, params


def test_reduced_variants_match_the_exact_counts_of_section_321():
    # "ContextNet with only 159,387 and 490,459 parameters" (section 3.2.1).
    for variant, exact in (("cn14_160", 159_387), ("cn14_500", 490_459)):
        params = count_params(ContextNet(variant=variant, aux_head=False))
        assert abs(params / exact - 1) < 0.05, (variant, params)


@pytest.mark.parametrize(
    "variant,deep_factor,fusion_ups",
    [("cn14", 4, [4]), ("cn12", 2, [2]), ("cn18", 8, [8]), ("cn124", 4, [2, 2])],
)
def test_branch_resolutions_and_fusion_dilation(variant, deep_factor, fusion_ups):
    model = ContextNet(variant=variant, aux_head=False, width_multiplier=0.25)
    assert model.get_layer("deep_downscale").pool_size == (deep_factor, deep_factor)
    ups = [
        lay for lay in model.layers if lay.name.startswith("fusion") and lay.name.endswith("_up")
    ]
    assert [u.factor for u in ups] == fusion_ups
    for up in ups:
        dw = model.get_layer(up.name.replace("_up", "_low_dw_dwconv"))
        assert dw.dilation_rate == (up.factor,) * 2  # Table 3: dilation = upsampling factor
    spatial = [
        layer
        for layer in model.layers
        if layer.name.startswith("shallow1_")
        and layer.name.endswith(("_conv", "_dwconv"))
        and layer.kernel_size == (3, 3)
    ]
    assert [layer.strides[0] for layer in spatial] == [2, 2, 2, 1]  # section 2.2.2


def test_deep_branch_follows_table2():
    model = ContextNet(aux_head=False, pyramid_pooling=False)
    projects = [lay for lay in model.layers if lay.name.endswith("_project_conv")]
    assert [lay.filters for lay in projects] == [32, 32, 48, 48, 48, 64, 64, 64, 96, 96, 128, 128]
    adds = [
        lay
        for lay in model.layers
        if lay.name.startswith("deep_block") and lay.name.endswith("_add")
    ]
    # residuals where input and output shapes agree (stride 1, same channels)
    assert sorted(int(lay.name[10:].split("_")[0]) for lay in adds) == [1, 2, 4, 5, 7, 8, 10, 12]
    acts = {
        lay.get_config()["activation"]
        for lay in model.layers
        if isinstance(lay, keras.layers.Activation)
    }
    assert acts <= {"relu6", "linear"}


def test_width_multiplier_scales_channels():
    assert make_divisible(32 * 2.0) == 64 and make_divisible(128 * 0.25) == 32
    wide = ContextNet(width_multiplier=2.0, aux_head=False)
    assert wide.get_layer("deep_out_conv").filters == 256
    assert wide.get_layer("fusion1_high_pw_conv").filters == 256


def test_aux_head_returns_dict_of_full_size_logits():
    model = ContextNet(num_classes=3, width_multiplier=0.25)
    out = model(np.zeros((1, 64, 96, 3), "float32"))
    assert set(out) == {"logits", "aux_logits"}
    assert out["aux_logits"].shape == (1, 64, 96, 3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"variant": "cn15"}, "cn14, cn12"),
        ({"num_classes": 0}, "positive"),
        ({"width_multiplier": -1.0}, "positive"),
        ({"image_shape": (100, 64, 3)}, "multiples of 32"),
        ({"variant": "cn18", "image_shape": (96, 96, 3)}, "multiples of 64"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContextNet(**kwargs)


def test_bad_input_size_raises_at_call():
    model = ContextNet(width_multiplier=0.25, aux_head=False)
    with pytest.raises(ValueError, match="multiples of 32; got 50x64. .* 64x64"):
        model(np.zeros((1, 50, 64, 3), "float32"))
    with pytest.raises(ValueError, match="3-channel"):
        model(np.zeros((1, 64, 64, 1), "float32"))


def test_variant_accepts_paper_spelling():
    assert ContextNet(variant="cn14-160", aux_head=False).name == "contextnet_cn14_160"
