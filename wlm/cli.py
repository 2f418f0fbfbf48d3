"""Command line: ``python -m wlm COMMAND ...``; each command is a module of ``wlm.commands``."""
from __future__ import annotations

import argparse
import importlib
import sys

from .commands import COMMANDS
from .commands.common import CLIError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default said once: not again where its help already says it, nor when it is
    nothing (None, False, empty)."""

    def _get_help_string(self, action):
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default in ("", argparse.SUPPRESS)
        if "default" in text or nothing:                    # (0 == False: compared by identity, 0 is said)
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wlm", description="wlm: an LSTM language model, fp32 against its "
                                "quantized copies")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        c = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=HelpFormatter)
        module.add_arguments(c)
        c.set_defaults(func=module.run)
    return p


def main(argv=None) -> int:
    from .checkpoint import CheckpointError
    from .download import DownloadError
    from .quantize import QuantizationError
    from .variants import VariantBuildError
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return args.func(args)
    except (CLIError, CheckpointError, DownloadError, QuantizationError, VariantBuildError, FileNotFoundError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
