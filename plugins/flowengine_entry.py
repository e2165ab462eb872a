"""The ``flowengine`` console script: Ctrl-C and SIGTERM get their one line from the first moment.

Importing flowengine and its plugins takes a while (a second or more on a slow
machine), and a signal in that time would otherwise end in a traceback (Ctrl-C)
or in silence (SIGTERM). This module imports nothing but the standard library's
``signal`` and ``sys``, so that it is in charge before the heavy imports start;
it then imports and runs ``flowengine.cli.main``, which handles a signal that
arrives while a command runs. It is a top-level module, not part of the
``flowengine`` package, because importing that package is the slow part.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["main"]

#: What the shell reports for a command ended by SIGINT (Ctrl-C) and by SIGTERM.
_STATUS = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}


class Terminated(SystemExit):
    """SIGTERM arrived: unwinds like Ctrl-C does, then exits 143 (``except Exception`` cannot stop it)."""

    def __init__(self) -> None:
        super().__init__(_STATUS[signal.SIGTERM])


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def main() -> None:
    """Run the ``flowengine`` command; a signal during start-up prints one line and exits 130 or 143."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = False
    try:
        from flowengine.cli import main as run_cli

        started = True
        run_cli()
    except KeyboardInterrupt:
        # A Ctrl-C while a command runs is the command's to report; this one came before it began.
        sys.stderr.write("\nCancelled before the command started; nothing was done.\n")
        sys.exit(_STATUS[signal.SIGINT])
    except Terminated:
        said = "." if started else " before the command started; nothing was done."
        sys.stderr.write(f"Terminated (SIGTERM){said}\n")
        sys.exit(_STATUS[signal.SIGTERM])


if __name__ == "__main__":
    main()
