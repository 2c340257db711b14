"""Peer for bench/ode_speed.py, run inside bench/.peer-venv: torchdiffeq dopri5.

Loads the derivative's weights from the .npz the kseg side wrote, so both integrate the
same ODE. Prints one JSON line.
"""

import argparse
import json

import numpy as np
import torch
import torch.nn as nn
from timing import timed
from torchdiffeq import odeint_adjoint


class Func(nn.Module):
    def __init__(self, w):
        super().__init__()
        c = w["conv1_kernel"].shape[-1]
        self.gn1, self.gn2 = nn.GroupNorm(32, c, eps=1e-5), nn.GroupNorm(32, c, eps=1e-5)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        with torch.no_grad():
            for name in ("conv1", "conv2"):  # Keras HWIO -> torch OIHW
                conv = getattr(self, name)
                conv.weight.copy_(torch.from_numpy(w[f"{name}_kernel"].transpose(3, 2, 0, 1)))
                conv.bias.copy_(torch.from_numpy(w[f"{name}_bias"]))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.conv2(torch.relu(self.gn2(self.conv1(torch.relu(self.gn1(y))))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--seminorm", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    w = np.load(args.weights)
    func = Func(w)
    x = torch.from_numpy(w["x"].transpose(0, 3, 1, 2).copy())
    t = torch.tensor([0.0, 1.0])
    # seminorm: the backward solve's error on (state, adjoint) only, as kseg's adjoint
    options = {"adjoint_options": {"norm": "seminorm"}} if args.seminorm else {}
    solve = lambda: odeint_adjoint(  # noqa: E731
        func, x, t, method="dopri5", rtol=args.tol, atol=args.tol, **options
    )

    func.nfe = 0
    with torch.no_grad():
        out = solve()[-1].numpy().transpose(0, 2, 3, 1).copy()  # before the timed runs
    nfe = func.nfe

    def forward():
        with torch.no_grad():
            solve()

    fwd = timed(forward, args.runs)
    fwdbwd = timed(lambda: (solve()[-1] ** 2).sum().backward(), args.runs)
    np.save(args.weights.replace(".npz", "_torch_out.npy"), out)
    print(
        json.dumps(
            {
                "nfe": nfe,
                "forward_s": fwd,
                "forward_backward_s": fwdbwd,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
