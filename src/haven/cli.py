"""The `haven` command.

Each area registers its own subcommands (`register(subparsers)` in the modules below) and
keeps heavy imports (torch, the server) inside the command functions, so `haven --help`
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import HavenError

# Modules that add subcommands, in the order they appear in `haven --help`.
COMMAND_MODULES = [
    "haven.hub.commands",  # login, logout, whoami, repo, upload, download
    "haven.pipelines.commands",  # run
    "haven.server.commands",  # serve, admin
    "haven.convert.commands",  # convert
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="haven", description="Haven: models, hub server and client.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"haven {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # that area is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HavenError as err:
        print(f"haven {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
