"""Peer for bench/startup.py, run in bench/.peer-venv: the first and the steady training
step of pytorchcv's ContextNet (`ctxnet_cityscapes`) in torch eager mode: forward,
cross-entropy, backward, an SGD update. With its auxiliary head and the auxiliary loss at
weight 0.4, as kseg's ContextNet trains (the paper's section 3). Prints one JSON line,
with the kernel time and the memory faulted in during the first step
(`timing.process_usage`)."""

import argparse
import json
import statistics
import time

import numpy as np
import torch
from pytorchcv.models.contextnet import ctxnet_cityscapes
from timing import process_usage, usage_since


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = ctxnet_cityscapes(in_size=(args.height, args.width), aux=True).train()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((args.batch, 3, args.height, args.width), "float32"))
    y = torch.from_numpy(rng.integers(0, 19, (args.batch, args.height, args.width)))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        logits, aux_logits = net(x)
        loss = loss_fn(logits, y) + 0.4 * loss_fn(aux_logits, y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def seconds_of_step():
        start = time.perf_counter()
        step()
        return time.perf_counter() - start

    before = process_usage()
    first_s = seconds_of_step()
    first = usage_since(before)
    steady = [seconds_of_step() for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "first_s": first_s,
                "steady_s": statistics.median(steady),
                "first_kernel_s": first["kernel_s"],
                "first_faulted_mib": first["faulted_mib"],
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
