"""Peer for bench/contextnet_speed.py and bench/export_speed.py, run in bench/.peer-venv.

Times pytorchcv's ContextNet (`ctxnet_cityscapes`, 876,563 parameters) in torch eager mode
and, exported to ONNX, in onnxruntime (`run` with numpy in and out, and with IOBinding).
Prints one JSON line.
"""

import argparse
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort
import torch
from pytorchcv.models.contextnet import ctxnet_cityscapes
from timing import timed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    net = ctxnet_cityscapes(in_size=(args.height, args.width)).eval()
    params = sum(q.numel() for q in net.parameters() if q.requires_grad)
    x = torch.from_numpy(
        np.random.default_rng(0).random((1, 3, args.height, args.width), "float32")
    )
    with torch.inference_mode():
        eager = timed(lambda: net(x), args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "contextnet.onnx")
        torch.onnx.export(net, (x,), path, input_names=["image"], opset_version=17, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feed = {"image": x.numpy()}
        onnx_s = timed(lambda: sess.run(None, feed), args.runs)
        # The same with input and output bound to buffers allocated once (IOBinding), the
        # counterpart of timing TFLite's invoke on its own tensors.
        binding = sess.io_binding()
        binding.bind_cpu_input("image", feed["image"])
        for output, value in zip(sess.get_outputs(), sess.run(None, feed), strict=True):
            buffer = ort.OrtValue.ortvalue_from_shape_and_type(value.shape, value.dtype)
            binding.bind_ortvalue_output(output.name, buffer)
        bound_s = timed(lambda: sess.run_with_iobinding(binding), args.runs)
    print(
        json.dumps(
            {
                "params": params,
                "torch_eager_s": eager,
                "onnxruntime_s": onnx_s,
                "onnxruntime_bound_s": bound_s,
                "torch": torch.__version__,
                "onnxruntime": ort.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
