"""The ``mmcourse`` command: ``doctor``, ``exercises``, ``book``, ``bench``, ``train``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEBUG_ENV = "MMCOURSE_DEBUG"  # set to 1 for the traceback of an error


def _doctor(args: argparse.Namespace) -> int:
    if args.summarize:
        from mmcourse import room

        return room.main(args.summarize)
    from mmcourse import doctor

    return doctor.main(as_json=args.json)


def _exercises(args: argparse.Namespace) -> int:
    from mmcourse.exercises import write_learner_copies

    try:
        written = write_learner_copies(args.notebooks, args.out_dir, only=args.chapters or None)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} learner notebooks to {args.out_dir}")
    return 0


def _book(args: argparse.Namespace) -> int:
    from mmcourse import book

    missing = book.missing_dependencies()
    if missing:
        print(f"error: the book needs the 'book' extra ({', '.join(missing)} missing): "
              "pip install 'mmcourse[book]'", file=sys.stderr)
        return 2
    try:
        seconds = book.build(args.out_dir, root=args.root, quiet=not args.verbose)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"built the book in {seconds:.0f} s: open {Path(args.out_dir) / 'index.html'}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from mmcourse.bench.suite import main

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.seq_len and args.ops:
        print("error: --seq-len times attention alone; leave out --ops", file=sys.stderr)
        return 2
    if args.seq_len and min(args.seq_len) < 1:
        print(f"error: --seq-len needs positive lengths, got {args.seq_len}", file=sys.stderr)
        return 2
    return main(args.device, repeats=args.repeats, warmup=args.warmup, ops=args.ops,
                as_json=args.json, size=args.size, seq_lens=args.seq_len)


def _train(args: argparse.Namespace) -> int:
    from mmcourse.trimodal import main

    return main(args.fusion, data=args.data, epochs=args.epochs, fusion_epochs=args.fusion_epochs,
                device=args.device, amp=args.amp, compile=args.compile, seed=args.seed,
                out=args.out, as_json=args.json, warm=not args.from_scratch, threads=args.threads)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmcourse", description=__doc__.replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="check the Python/torch stack, devices and course data")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--summarize", nargs="+", metavar="REPORT",
                   help="summarize a room: the --json reports of many laptops (one file each, "
                   "named after the laptop)")
    p.set_defaults(run=_doctor)

    p = sub.add_parser("exercises", help="write learner copies of the notebooks, solutions removed")
    p.add_argument("out_dir", help="folder for the learner copies")
    p.add_argument("chapters", nargs="*",
                   help="only these chapters, by number or name (e.g. 02 05_audio_features); "
                   "default: all")
    p.add_argument("--notebooks", default=None,
                   help="folder of the source notebooks (default: the course's own, shipped with "
                   "the package)")
    p.set_defaults(run=_exercises)

    p = sub.add_parser("book", help="build the course as a static web site (needs the book extra)")
    p.add_argument("out_dir", help="folder for the site (replaced if it exists)")
    p.add_argument("--root", default=None, help="the repository checkout (default: this package's)")
    p.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    p.set_defaults(run=_book)

    p = sub.add_parser("bench", help="time scratch vs optimized attention, conv, LSTM, MFCC")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument("--ops", nargs="+", default=None, choices=["attention", "conv2d", "lstm", "mfcc"],
                   help="which kernels (default: all)")
    p.add_argument("--size", default="small", choices=["small", "large"],
                   help="problem sizes: small (seconds on a CPU) or large (for a GPU)")
    p.add_argument("--seq-len", type=int, nargs="+", default=None, metavar="S",
                   help="instead of the suite: causal attention forward+backward at these "
                   "sequence lengths, scratch vs mmcourse vs raw SDPA, in TFLOP/s and as a "
                   "share of the device's peak (--size sets B, H, d)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_bench)

    # no imports of torch modules here: `mmcourse doctor` must run when torchaudio is broken
    p = sub.add_parser("train", help="train the tri-modal model and its unimodal baselines; "
                       "print the results table")
    p.add_argument("--fusion", default="late",
                   help="fusion method, one of mmcourse.nn.fusion.METHODS (default: late; an "
                   "unknown name lists them)")
    p.add_argument("--data", default="digits", choices=["digits", "avmnist"],
                   help="digits: the embedded course data; avmnist: downloaded AV-MNIST")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of each unimodal model (default 14, early stopping on val)")
    p.add_argument("--fusion-epochs", type=int, default=None,
                   help="epochs of the fused model, warm-started from them (default 2)")
    p.add_argument("--from-scratch", action="store_true",
                   help="train the fused model from random weights, not from the unimodal ones")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="mixed precision (auto: bf16 or fp16 on CUDA, off on the CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the models")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: 1, or OMP_NUM_THREADS when set)")
    p.add_argument("--out", default="mmcourse-run",
                   help="folder for model.pt (the checkpoint) and report.json")
    p.add_argument("--json", action="store_true", help="print the JSON report, not the table")
    p.set_defaults(run=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; an error ends it with its message on stderr (no traceback) and status 1,
    unless ``MMCOURSE_DEBUG=1`` asks for the traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
            raise
        message = str(err) or type(err).__name__
        if not isinstance(err, (OSError, ValueError, RuntimeError)):  # likely a bug: say what
            message = f"{type(err).__name__}: {message}"
        print(f"error: {message}\n(set {DEBUG_ENV}=1 to see the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
