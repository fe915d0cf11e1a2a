"""``python -m keras_pairs COMMAND [flags]`` and the installed ``keras-pairs COMMAND [flags]``."""

import importlib
import sys

from .commands import COMMANDS


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        listing = "\n".join(f"  {name:<{width}}  {what}" for name, what in COMMANDS.items())
        print(f"usage: keras-pairs COMMAND [flags]   (COMMAND --help for its flags)\n\ncommands:\n{listing}",
              file=sys.stderr if argv else sys.stdout)
        return 2 if argv and argv[0] not in ("-h", "--help") else 0
    sys.argv[0] = f"keras-pairs {argv[0]}"  # argparse's usage line names the command, not __main__.py
    return importlib.import_module(f"keras_pairs.commands.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
