"""Aria's command line: ``aria <command>`` (``aria --help`` lists them).

Workflow commands (:mod:`aria.cli.workflow`) are what the Snakemake rules call,
one per rule; user commands (:mod:`aria.cli.user`) work on a user's own files,
e.g. ``aria diagnose scores.pt``. The ``aria`` script runs every command under
the supervisor of :mod:`aria.runtime`; :func:`main` runs one in this process.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import time

__all__ = ["main", "build_parser", "COMMANDS"]

log = logging.getLogger("aria")


def _commands() -> dict:
    from aria.cli import user, workflow

    return {**workflow.COMMANDS, **user.COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="aria", description="Aria: per-aspect diagnostics of music attribution.")
    verbose = "also say which private numba cache a job that uses librosa had, and log debug messages"
    ap.add_argument("-v", "--verbose", action="store_true", help=verbose)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (fn, args) in _commands().items():
        sp = sub.add_parser(name, help=fn.__doc__.splitlines()[0], description=fn.__doc__)
        for flag, kw in args:
            if flag.startswith("-"):
                sp.add_argument(flag, **{"required": True, **kw})
            else:
                sp.add_argument(flag, **kw)
        sp.add_argument("--threads", type=int, default=1, help="torch CPU threads")
        # SUPPRESS: `aria -v CMD` and `aria CMD -v` both work (the subcommand's default would reset it)
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose)
        sp.set_defaults(func=fn)
    return ap


def main(argv=None) -> int:
    """Run one command in this process; the exit status."""
    from aria import registry

    registry.load_plugins()  # methods registered by modules named in $ARIA_PLUGINS
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose:
        log.setLevel(logging.DEBUG)
    t0 = time.perf_counter()
    try:
        rc = args.func(args)
    except (ValueError, FileNotFoundError, OSError) as e:
        from aria.cli import user

        if type(e) is OSError and e.errno != errno.ENOSPC:  # other OS errors: a traceback helps
            log.error("%s failed: %s: %s", args.command, type(e).__name__, e)
            raise

        if args.command not in user.COMMANDS:
            log.error("%s failed: %s: %s", args.command, type(e).__name__, e)
            raise
        print(f"aria {args.command}: error: {e}", file=sys.stderr)  # a user's bad input: no traceback
        return 2
    except Exception as e:
        log.error("%s failed: %s: %s", args.command, type(e).__name__, e)
        raise
    log.info("%s done in %.1f s", args.command, time.perf_counter() - t0)
    return int(rc or 0)


def __getattr__(name):
    if name == "COMMANDS":
        return _commands()
    raise AttributeError(name)
