"""Aria's command line: ``aria <command>`` (``aria --help`` lists them).

Workflow commands are the jobs of :mod:`aria.workflow.jobs`, one per rule; their options are
generated from each job's argument dataclass (:func:`aria.workflow.jobs.base.options`). User
commands (:mod:`aria.cli.user`) work on a user's own files, e.g. ``aria diagnose scores.pt``.
The ``aria`` script (:func:`entry`) runs every command under the supervisor of
:mod:`aria.runtime`; :func:`main` runs one in this process.
"""

from __future__ import annotations

import argparse
import errno
import faulthandler
import logging
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "entry", "build_parser", "COMMANDS"]

log = logging.getLogger("aria")

VERBOSE = "also say which private numba cache a job that uses librosa had, and log debug messages"


def _commands() -> dict:
    """``{name: (function, [(flag, argparse kwargs), ...], the Job or None)}``."""
    from aria.cli import user
    from aria.workflow.jobs import all_jobs
    from aria.workflow.jobs.base import options

    jobs = {name: (j.fn, options(j.args), j) for name, j in all_jobs().items()}
    return {**jobs, **{name: (fn, args, None) for name, (fn, args) in user.COMMANDS.items()}}


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (workflow jobs and user commands)."""
    ap = argparse.ArgumentParser(prog="aria", description="Aria: per-aspect diagnostics of music attribution.")
    ap.add_argument("-v", "--verbose", action="store_true", help=VERBOSE)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (fn, args, job) in _commands().items():
        sp = sub.add_parser(name, help=fn.__doc__.splitlines()[0], description=fn.__doc__)
        for flag, kw in args:
            sp.add_argument(flag, **({"required": True, **kw} if flag.startswith("-") else kw))
        if job is None:  # job dataclasses declare --threads themselves
            sp.add_argument("--threads", type=int, default=1, help="torch CPU threads")
        # SUPPRESS: `aria -v CMD` and `aria CMD -v` both work (the subcommand's default would reset it)
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE)
        sp.set_defaults(func=fn, job=job)
    return ap


def main(argv=None) -> int:
    """Run one command in this process; the exit status."""
    from dataclasses import fields

    from aria import registry

    registry.load_plugins()  # methods registered by modules named in $ARIA_PLUGINS
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if ns.verbose:
        log.setLevel(logging.DEBUG)
    job = ns.job
    t0 = time.perf_counter()
    try:
        if job is not None:  # a workflow job: its dataclasses, JSON options parsed, settings checked
            rc = job({f.name: getattr(ns, f.name) for f in fields(job.args)})
        else:
            rc = ns.func(ns)
    except (ValueError, FileNotFoundError, OSError) as e:
        if (type(e) is OSError and e.errno != errno.ENOSPC) or job is not None:
            # other OS errors, and a workflow job's failure: the traceback helps
            log.error("%s failed: %s: %s", ns.command, type(e).__name__, e)
            raise
        print(f"aria {ns.command}: error: {e}", file=sys.stderr)  # a user's bad input: no traceback
        return 2
    except Exception as e:
        log.error("%s failed: %s: %s", ns.command, type(e).__name__, e)
        raise
    log.info("%s done in %.1f s", ns.command, time.perf_counter() - t0)
    return int(rc or 0)


def entry(argv: list[str] | None = None) -> int:
    """The ``aria`` console script: supervise the command, or run it when already supervised."""
    from aria import runtime

    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.pop(runtime.SUPERVISED_ENV, None) == "1":
        faulthandler.enable(file=sys.stderr, all_threads=True)
        used = os.environ.pop(runtime.JIT_USED_ENV, None)
        try:
            return main(argv)
        finally:
            if used and "numba" in sys.modules:  # tell the supervisor (its cache note is for numba users)
                Path(used).touch()
    command = next((a for a in argv if not a.startswith("-")), "")
    if not command or command in ("help",):
        return main(argv)  # --help and usage errors need no child
    return runtime.supervise(
        [sys.executable, "-m", "aria", *argv],
        command=command,
        seed=command not in runtime.UNSEEDED_COMMANDS,
        verbose=any(a in runtime.VERBOSE_FLAGS for a in argv),
        aria_argv=argv,
    )


def __getattr__(name):
    if name == "COMMANDS":
        return _commands()
    raise AttributeError(name)
