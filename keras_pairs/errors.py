"""The two kinds of failure that are not bugs, and how a command line shows each (``cli.execute``).

``UserError``: something the user can fix: a bad flag value, an unknown name, a missing, corrupt
or wrong-shaped file, a missing optional dependency. The message names the problem and what to
do; a command prints it as one ``error:`` line and exits with 2.

``FailedCheck``: the work ran, but its result cannot be trusted or is incomplete: an exported
artifact that disagrees with its Keras model, a run whose jobs did not all finish. A command says
so in full (the message may span lines) and exits with 1.

Anything else is a bug: a command shows its traceback and exits with 1. ``--verbose`` shows the
traceback of every failure. ``UserError`` is a ``ValueError``, so library callers that validate
arguments the usual way keep working.
"""


class UserError(ValueError):
    """Bad input a user can correct; the message says what is wrong and what to do."""


class FailedCheck(Exception):
    """Work that ran but whose result failed a check or is incomplete; said in full."""


def require_extra(extra: str, *modules: str) -> None:
    """Raises a UserError naming the pyproject extra to install when one of ``modules`` (the
    optional packages a feature needs) cannot be imported."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"this needs the optional packages of keras_pairs[{extra}] ({', '.join(missing)} not "
                        f"installed): pip install 'keras_pairs[{extra}]' (or pip install -r requirements.txt)")
