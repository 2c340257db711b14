"""--sync-bn: batch norm over the global batch when a strategy splits it over replicas.
Two logical CPUs under `MirroredStrategy`, in a process of their own (TensorFlow's devices
are fixed once it starts), against one device on the whole batch."""

import numpy as np

from tests.helpers import script_result

# One SGD step of a conv -> kseg batch norm -> ReLU -> conv net on a batch of 4 whose
# halves differ in scale (as two GPUs' shares of a batch do), from the same weights: on one
# device; on two replicas with `synchronize_batch_norm` "auto" (on: 2 replicas); with "off".
SCRIPT = """
import json, sys
import numpy as np
from kseg.train.strategy import get_strategy, split_cpu, synchronize_batch_norm
split_cpu(2)
import keras
from kseg.layers.norm import BatchNormalization

def build():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)(x)
    y = keras.layers.ReLU()(BatchNormalization(momentum=0.5)(y))
    model = keras.Model(x, keras.layers.Conv2D(2, 1)(y))
    model.compile(keras.optimizers.SGD(0.5), "mse")
    return model

rng = np.random.default_rng(0)
images = rng.normal(size=(4, 8, 8, 3)).astype("float32")
images[2:] = 3 * images[2:] + 1  # the second replica's share: another mean and spread
targets = rng.normal(size=(4, 8, 8, 2)).astype("float32")
out, mirrored = {}, get_strategy("mirrored")  # one, as a run makes one (Runner.strategy)
for name, strategy, setting in (("one", get_strategy("default"), "auto"),
                                ("sync", mirrored, "auto"), ("local", mirrored, "off")):
    with strategy.scope():
        model = build()
        synced = synchronize_batch_norm(model, setting, strategy.num_replicas_in_sync)
    model.fit(images, targets, batch_size=4, epochs=1, shuffle=False, verbose=0)
    norm = next(l for l in model.layers if isinstance(l, BatchNormalization))
    out[name] = {"replicas": strategy.num_replicas_in_sync, "synced": synced,
                 "variance": np.asarray(norm.moving_variance).tolist(),
                 "weights": [np.asarray(w).ravel().tolist() for w in model.weights
                             if w.trainable]}
print("RESULT" + json.dumps(out))
"""


def test_synchronized_batch_norm_on_two_replicas_equals_one_device_on_the_whole_batch():
    """With batch norm synchronised, two replicas' step gives the weights and moving
    variance of one device's step on the whole batch; each replica on its own share gives
    other ones (the shares differ, so their statistics do)."""
    out = script_result(SCRIPT)
    assert [out[k]["replicas"] for k in ("one", "sync", "local")] == [1, 2, 2]
    # (synchronised, left per replica in ODE blocks): the one batch norm, when on
    assert [out[k]["synced"] for k in ("one", "sync", "local")] == [[0, 0], [1, 0], [0, 0]]
    one, sync, local = (out[k] for k in ("one", "sync", "local"))
    np.testing.assert_allclose(sync["variance"], one["variance"], rtol=1e-5)
    for a, b in zip(sync["weights"], one["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Each replica's own statistics: the moving variance averages the halves' variances,
    # which leave out the spread between the halves' means.
    assert np.min(np.asarray(one["variance"]) - np.asarray(local["variance"])) > 0.05
    assert (
        max(
            np.max(np.abs(np.asarray(a) - np.asarray(b)))
            for a, b in zip(local["weights"], one["weights"], strict=True)
        )
        > 1e-3
    )


def test_batch_norms_in_ode_blocks_stay_per_replica():
    """SegNode's batch norms outside its ODE blocks are synchronised; those in the blocks'
    derivatives, which run inside the solver's loop, are not (an adaptive solve takes as
    many steps on each replica as its share needs, so the all-reduces would not pair)."""
    from kseg.models import create_model
    from kseg.ode.block import ODEBlock
    from kseg.train.precise_bn import batch_norm_layers
    from kseg.train.strategy import synchronize_batch_norm

    model = create_model("segnode", num_classes=3, width=8, modules=1)
    blocks = [b for b in model._flatten_layers() if isinstance(b, ODEBlock)]
    inside = {id(x) for b in blocks for x in b._flatten_layers() if x in batch_norm_layers(b)}
    every = batch_norm_layers(model)
    assert blocks and 0 < len(inside) < len(every)
    assert synchronize_batch_norm(model, "on", replicas=2) == (
        len(every) - len(inside),
        len(inside),
    )
    assert all(x.synchronized == (id(x) not in inside) for x in every)
    assert synchronize_batch_norm(model, "auto", replicas=1) == (0, 0)
    assert not any(x.synchronized for x in every)
