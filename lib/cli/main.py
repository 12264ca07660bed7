"""`liver-tumor`: the project's command-line tool, one subcommand per stage."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Sequence

from . import (
    bench_commands,
    data_commands,
    decathlon_commands,
    device_commands,
    dicom_commands,
    model_commands,
    preannotate_commands,
    train_commands,
)
from .common import CliError


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage block) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="liver-tumor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    data_commands.register(sub)
    decathlon_commands.register(sub)
    model_commands.register(sub)
    train_commands.register(sub)
    preannotate_commands.register(sub)
    dicom_commands.register(sub)
    bench_commands.register(sub)
    device_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # a command that starts itself again under torchrun (preannotate) passes them on
    try:
        args.run(args)
    except KeyboardInterrupt:
        sys.stderr.write("liver-tumor: interrupted\n")
        return 130
    except (CliError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError, RuntimeError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.stderr.write(f"liver-tumor {args.command}: error: {message}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
