"""`python -m kseg.export.benchmark MODEL.tflite`: time a TFLite file as LiteRT's
`benchmark_model` does.

Warm-up runs, then timed runs of `invoke` alone (the input already in its tensor), for
each thread count with the XNNPACK delegate on and off; p50/p90/mean latency, start-up
time and peak memory, each configuration in a fresh process. The measurement is the
export folder's `segment.py --benchmark` (`kseg.predict.standalone`), so a board without
kseg measures the same way.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from kseg.errors import UserError, command_parser, run_command
    from kseg.recipes.config import non_negative, positive

    p = command_parser("python -m kseg.export.benchmark", __doc__.splitlines()[0])
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--threads", type=positive, nargs="+", default=[1, 2], help="thread counts")
    p.add_argument("--runs", type=positive, default=50, help="timed runs per configuration")
    p.add_argument("--warmup", type=non_negative, default=5, help="untimed runs before them")
    args = p.parse_args(argv)

    def run():
        from kseg.predict import standalone

        try:
            results = standalone.benchmark(args.model, tuple(args.threads), args.runs, args.warmup)
        except standalone.UsageError as e:
            raise UserError(str(e)) from None
        print(f"{args.model}: {args.runs} runs after {args.warmup} warm-up runs")
        print(standalone.benchmark_table(results))

    run_command(run, argv)


if __name__ == "__main__":
    main()
