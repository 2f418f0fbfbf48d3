"""The commands of ``python -m wlm``, one module each, all found the same way: a module here
named in ``COMMANDS`` with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.

Each module imports only ``argparse`` and ``.common`` at the top, so ``--help`` of every command
is fast; what a command runs is imported inside its ``run``.
"""
COMMANDS = ("download", "train", "eval", "generate", "score", "bench", "inspect", "calibrate", "bits", "export", "results",
            "load")
