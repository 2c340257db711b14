"""`python -m kseg.convert CHECKPOINT --model NAME --num-classes N --out MODEL.keras`: a
trained model's PyTorch checkpoint as a kseg model.

The registered model `NAME` is built as PyTorch computes it and takes every weight from
the checkpoint (HRNet-Semantic-Segmentation's HRNetV2 models, read without PyTorch); the
`.keras` file it writes is then predicted with, evaluated and exported as any kseg model.
"""

from __future__ import annotations

import os


def main(argv: list[str] | None = None) -> None:
    from kseg.errors import command_parser, run_command
    from kseg.recipes.config import model_kwargs, positive

    p = command_parser("python -m kseg.convert", __doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a .pth, .pt, .bin or .safetensors file")
    p.add_argument("--model", required=True, help="a name from kseg.models.list_models()")
    p.add_argument("--num-classes", type=positive, required=True, help="the checkpoint's classes")
    p.add_argument(
        "--model-kwargs", type=model_kwargs, default={}, help="other model arguments as JSON"
    )
    p.add_argument("--out", required=True, help="the .keras file to write (not overwritten)")
    args = p.parse_args(argv)
    run_command(lambda: convert(args), argv)


def convert(args) -> str:
    from kseg.errors import UserError
    from kseg.models import create_model
    from kseg.train.init_from import load_trained, source_arguments

    if not args.out.endswith(".keras"):
        raise UserError(f"--out {args.out}: give a .keras file name")
    if os.path.exists(args.out):
        raise UserError(f"--out {args.out} exists; kseg does not overwrite it")
    arguments = {**source_arguments(args.model, args.checkpoint), **args.model_kwargs}
    model = create_model(args.model, num_classes=args.num_classes, **arguments)
    load_trained(model, args.checkpoint)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    model.save(args.out)
    print(
        f"Wrote {args.out}: python -m kseg.predict {args.out} IMAGES --out DIR, or "
        f"python -m kseg.export {args.out} --out DIR"
    )
    return args.out


if __name__ == "__main__":
    main()
