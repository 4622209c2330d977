"""The ``mmcourse`` command: ``doctor``, ``exercises`` (and more as the course grows)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _doctor(args: argparse.Namespace) -> int:
    from mmcourse import doctor

    return doctor.main(as_json=args.json)


def _exercises(args: argparse.Namespace) -> int:
    from mmcourse.exercises import write_learner_copies

    src = Path(args.notebooks)
    if not src.is_dir():
        print(
            f"error: notebooks folder {src} not found; run from the course checkout or pass "
            "--notebooks PATH",
            file=sys.stderr,
        )
        return 2
    written = write_learner_copies(src, args.out_dir)
    print(f"wrote {len(written)} learner notebooks to {args.out_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmcourse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="check the Python/torch stack, devices and course data")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_doctor)

    p = sub.add_parser("exercises", help="write learner copies of the notebooks, solutions removed")
    p.add_argument("out_dir", help="folder for the learner copies")
    p.add_argument("--notebooks", default="notebooks", help="folder of the course notebooks")
    p.set_defaults(run=_exercises)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
