"""How every ``aria`` job process runs: a private JIT cache, and a report when it crashes.

The problem (issue 6)
---------------------
librosa compiles its numba kernels with ``cache=True``. numba stores those
caches next to librosa's sources, inside the virtual environment, and its cache
index is not safe when two processes compile overloads of one function at the
same moment: both name their data file ``<function>.1.nbc``, and the index can
end up pointing at machine code compiled for the other signature. Every later
process loads that code and dies with SIGSEGV, until someone deletes the files.
Any parallel run hits it: ``snakemake --cores 2``, or a cluster whose nodes
share one venv over NFS.

What Aria does
--------------
Every ``aria`` command started from a shell, which is every workflow job, runs
as the child of a small supervisor (:func:`supervise`, started by :func:`aria.cli.entry`, the ``aria`` console script):

* The child gets its **own numba cache directory** (``NUMBA_CACHE_DIR``) in
  node-local temporary storage (``$TMPDIR``), seeded with a copy of a read-only
  *template* compiled once, serially, when the environment is built
  (``aria warm-jit-cache``, run by ``make venv``). The supervisor deletes the
  directory when the child exits. No job ever writes a cache that another
  process reads, so parallel jobs cannot race, whatever the executor, and a
  cache corrupted by an older version or another tool is never read. A job that
  needs a kernel the template lacks compiles it into its private copy only.
  Without a template (e.g. ``pip install`` without ``make``) jobs compile from
  scratch: correct, but slower; the log says so. The costs of the options, per
  job, are measured by ``bench/bench_jit_cache.py`` (numbers in bench/README.md).
* A user's ``NUMBA_CACHE_DIR`` is replaced for the job (the log says so): a
  shared directory is exactly what the race needs.
* Only a job that imported numba (librosa) says anything about its cache, and
  then only what needs action (no template, kernels the template lacks, a
  replaced ``NUMBA_CACHE_DIR``); ``aria -v`` adds which cache it had and how it
  was seeded. Every other command (``aria diagnose --json``) adds nothing to
  stderr.
* The child enables :mod:`faulthandler`, so a native crash prints the Python
  stack of every thread into the job's log.
* The child's glibc **malloc keeps freed memory** for reuse instead of returning
  every large block to the kernel (:data:`MALLOC_DEFAULTS`, unless the user set
  them). By default each large tensor freed is unmapped and the next one is
  mapped and zero-filled page by page again: a demo training job spent 56 of its
  133 s in the kernel doing that; with these settings 1 s, and it ran in 77 s
  with bit-identical weights (``bench/bench_malloc.py``). Peak memory is the
  same; memory freed after the peak is kept by the process until it exits.
* Long loops go through :func:`progress`, which records the item being
  processed. When the child dies from a signal, the supervisor appends a report
  to the log: the signal, that item, and what to try. It then exits with
  ``128 + signal`` (139 for SIGSEGV), as a shell would.

Only the standard library is imported here, so the supervisor starts fast.
``aria.cli.main`` runs a command in the current process, unsupervised: that is
what tests call directly (``tests/conftest.py`` gives the test process its own
cache the same way, with :func:`isolate_jit_cache`).
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from aria import forkserver

__all__ = [
    "supervise",
    "isolate_jit_cache",
    "jit_template_dir",
    "publish_jit_template",
    "progress",
    "mark",
    "crash_report",
]

#: Set in the child's environment by the supervisor; the child removes it again
#: so that an ``aria`` process it starts is supervised on its own.
SUPERVISED_ENV = "ARIA_SUPERVISED"
#: File in which :func:`mark` records the item being processed (set by the supervisor).
PROGRESS_ENV = "ARIA_PROGRESS_FILE"
#: File the child creates when it imported numba (librosa's kernels), so that the supervisor
#: reports the private cache only for jobs that used it.
JIT_USED_ENV = "ARIA_JIT_USED_FILE"
#: Command-line flags that make the supervisor report the job's private numba cache.
VERBOSE_FLAGS = ("-v", "--verbose")
#: Overrides where the JIT template lives (default: under the environment's prefix).
TEMPLATE_ENV = "ARIA_JIT_TEMPLATE"
NUMBA_ENV = "NUMBA_CACHE_DIR"
#: glibc malloc settings every job gets unless its environment sets them (module docstring):
#: no mmap for large blocks, no trimming of the heap top, 256 MiB grown at a time.
MALLOC_DEFAULTS = {
    "MALLOC_MMAP_THRESHOLD_": str(4 << 30),
    "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
    "MALLOC_TOP_PAD_": str(256 << 20),
}
#: Commands whose child must start from an empty cache (they build the template).
UNSEEDED_COMMANDS = {"warm-jit-cache"}
_CACHE_SUFFIXES = (".nbi", ".nbc")

T = TypeVar("T")


# --------------------------------------------------------------------------- JIT cache
def jit_template_dir() -> Path:
    """Directory of the read-only JIT template for this environment.

    ``$ARIA_JIT_TEMPLATE`` when set, else
    ``<sys.prefix>/var/aria/jit-cache-<key>`` where ``<key>`` names the Python,
    numba, llvmlite and librosa versions and the machine architecture, so an
    upgrade of any of them starts a new template instead of reusing a stale one.
    (numba also keys every entry on the CPU model: on a node with another CPU
    the template's entries are not used, and the job compiles its own.)
    """
    if os.environ.get(TEMPLATE_ENV):
        return Path(os.environ[TEMPLATE_ENV])
    parts = [f"py{sys.version_info[0]}{sys.version_info[1]}", platform.machine() or "unknown"]
    for dist in ("numba", "llvmlite", "librosa"):
        try:
            parts.append(f"{dist}{importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"no-{dist}")
    return Path(sys.prefix) / "var" / "aria" / ("jit-cache-" + "-".join(parts))


def _cache_files(root: Path) -> dict[str, int]:
    """Relative path -> mtime (ns) of every numba index/data file under ``root``."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(_CACHE_SUFFIXES):
                p = Path(dirpath, f)
                out[str(p.relative_to(root))] = p.stat().st_mtime_ns
    return out


def _new_private_dir(tag: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"aria-{tag}-"))


def _seed(cache: Path, template: Path | None) -> int:
    """Copy the template's files into ``cache``; return how many were copied."""
    if template is None or not template.is_dir():
        return 0
    shutil.copytree(template, cache, dirs_exist_ok=True)
    return len(_cache_files(cache))


def isolate_jit_cache(*, seed: bool = True) -> Path:
    """Give *this* process a private numba cache; removed when the process exits.

    Must run before numba is imported (numba reads ``NUMBA_CACHE_DIR`` once, at
    import). Used by the test suite and by scripts that call the library in
    process; ``aria`` commands get theirs from the supervisor.

    Parameters
    ----------
    seed : bool, default True
        Start from a copy of :func:`jit_template_dir` when it exists.

    Returns
    -------
    pathlib.Path
        The private cache directory (also in ``os.environ["NUMBA_CACHE_DIR"]``).

    Raises
    ------
    RuntimeError
        If numba is already imported, so the setting could no longer take effect.
    """
    if "numba" in sys.modules:
        raise RuntimeError("isolate_jit_cache() must run before numba (or librosa) is imported")
    root = _new_private_dir("jit")
    cache = root / "numba"
    cache.mkdir()
    if seed:
        _seed(cache, jit_template_dir())
    os.environ[NUMBA_ENV] = str(cache)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return cache


def publish_jit_template(cache: str | os.PathLike, template: str | os.PathLike | None = None) -> Path:
    """Install the numba cache directory ``cache`` as the template, atomically.

    The files are copied next to the template, then renamed into place, so a job
    starting meanwhile sees either the old template, no template, or the new
    one, never a partial copy. Call it from one process only (``make venv``
    does, once); jobs never write the template.

    Returns
    -------
    pathlib.Path
        The template directory.
    """
    template = Path(template) if template is not None else jit_template_dir()
    template.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=template.name + ".new-", dir=template.parent))
    shutil.copytree(cache, staging, dirs_exist_ok=True)
    old = None
    if template.exists():
        old = template.with_name(f"{template.name}.old-{os.getpid()}")
        os.rename(template, old)
    os.rename(staging, template)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return template


# --------------------------------------------------------------------------- progress markers
_marker = None  # open file of PROGRESS_ENV, or None


def mark(item: str) -> None:
    """Record what this process is working on (read back if it crashes).

    Overwrites one small file in the job's private directory; the write reaches
    the kernel's page cache, which survives the process dying from a signal.
    A no-op outside a supervised job.
    """
    global _marker
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    if _marker is None:
        _marker = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open for the process
    _marker.seek(0)
    _marker.write(item)
    _marker.truncate()
    _marker.flush()


def progress(
    items: Iterable[T],
    *,
    desc: str,
    unit: str = "it",
    total: int | None = None,
    name: Callable[[T], str] = str,
    enabled: bool = True,
    mininterval: float = 2.0,
) -> Iterator[T]:
    """Iterate with a tqdm bar, recording each item for crash reports.

    Parameters
    ----------
    items : iterable
    desc, unit : str
        Bar label and unit.
    total : int, optional
        Length, when ``items`` has none.
    name : callable, default str
        How an item is named in a crash report (e.g. its file path).
    enabled : bool, default True
        Show the bar (items are recorded either way).
    mininterval : float, default 2.0
        Seconds between bar updates (keeps logs short).

    Yields
    ------
    The items, unchanged.
    """
    from tqdm import tqdm

    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    n = "?" if total is None else str(total)
    for i, item in enumerate(
        tqdm(items, desc=desc, unit=unit, total=total, disable=not enabled, mininterval=mininterval)
    ):
        mark(f"{desc} {i + 1}/{n}: {name(item)}")
        yield item


# --------------------------------------------------------------------------- crash report
_NATIVE = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}


def crash_report(command: str, signum: int, working_on: str | None, cache: str | None) -> str:
    """The text the supervisor appends to a job's log when the job died from ``signum``."""
    try:
        sig = signal.Signals(signum)
        what = f"signal {signum} ({sig.name}: {signal.strsignal(signum)})"
    except ValueError:
        sig, what = None, f"signal {signum}"
    lines = ["", "=" * 78, f"aria {command}: the process died from {what}."]
    lines.append(
        f"It was working on: {working_on}"
        if working_on
        else "It died before starting on its first item (while loading models or inputs)."
    )
    if sig in _NATIVE:
        lines += [
            "This is a crash inside a native library (numba/LLVM-compiled code, libsndfile, onnxruntime,",
            "torch, ...), not a Python error. faulthandler's Python stack at the crash is printed above.",
            "What to try:",
            "  1. Run the job again on its own: snakemake --cores 1 <this job's output>. Aria compiled its",
            f"     numba code into a private cache ({cache or 'none'}) that no other process touches, so a",
            "     crash that repeats is not a race between jobs.",
            "  2. If it stops on the same file every time, check that file (open it with another tool, or",
            "     convert it to 16-bit WAV) or leave it out of the corpus manifest.",
            "  3. If every job crashes inside librosa/numba (chroma_cqt, estimate_tuning, ...), the environment",
            "     may be damaged or carry a corrupt numba cache from an older run: `make clean-jit-cache`,",
            "     or rebuild it: rm -rf .venv && make venv. README, 'Troubleshooting', has the details.",
        ]
    elif sig == signal.SIGKILL:
        lines += [
            "SIGKILL comes from outside the process: most often the kernel's out-of-memory killer, or a",
            "cluster scheduler enforcing its memory or time limit (check `dmesg` or the scheduler's record,",
            "e.g. `sacct -j <jobid>`). What to try: give the rule more memory (`mem_mb`) or time (`runtime`)",
            "in your profile (--set-resources RULE:mem_mb=...), or make its shards smaller.",
        ]
    else:
        lines += [
            "It was stopped by a signal sent to it (Ctrl-C, Snakemake cancelling the run, or a cluster",
            "scheduler's time limit or pre-emption). Outputs are written to a temporary path and renamed",
            "when complete, so nothing half-written is left: rerun the workflow to continue.",
        ]
    lines.append("=" * 78)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- supervisor
def supervise(
    argv: list[str], *, command: str, seed: bool = True, verbose: bool = False, aria_argv: list[str] | None = None
) -> int:
    """Run ``argv`` as a child with a private JIT cache; report if it dies from a signal.

    Only a child that imported numba (a job that uses librosa) hears about its cache: with
    ``verbose``, which cache it had and how it was seeded; always, what needs action (no
    template, so the job compiled from scratch; kernels the template lacks; an inherited
    ``NUMBA_CACHE_DIR`` that was replaced). A child that never imported numba adds nothing to
    stderr, so ``aria diagnose --json`` prints only its JSON.

    Parameters
    ----------
    argv : list of str
        The child's command line.
    command : str
        Name used in messages (the ``aria`` subcommand).
    seed : bool, default True
        Seed the private cache from the template.
    verbose : bool, default False
        Also say which private cache a numba-using child had (``aria -v``).
    aria_argv : list of str, optional
        The same command as ``aria`` arguments: with ``ARIA_FORKSERVER=1`` the job is forked from
        a server that has the libraries imported (:mod:`aria.forkserver`) instead of started anew.

    Returns
    -------
    int
        The child's exit status, or ``128 + signal`` when a signal ended it.
    """
    root = _new_private_dir("job")
    try:
        cache = root / "numba"
        cache.mkdir()
        template = jit_template_dir()
        n_seeded = _seed(cache, template) if seed else 0
        before = _cache_files(cache)
        marker, used = root / "working_on", root / "jit_used"
        env = dict(os.environ)
        inherited = env.get(NUMBA_ENV)
        env.update({NUMBA_ENV: str(cache), PROGRESS_ENV: str(marker), JIT_USED_ENV: str(used), SUPERVISED_ENV: "1"})
        for key, value in MALLOC_DEFAULTS.items():
            env.setdefault(key, value)

        child = None
        if aria_argv is not None and forkserver.enabled(env):
            child = forkserver.spawn(aria_argv, env)
            if child is not None and verbose:
                print(f"aria: {command} forked by the fork server as pid {child.pid}", file=sys.stderr, flush=True)
        if child is None:
            child = subprocess.Popen(argv, env=env)
        forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {s: signal.signal(s, lambda s, _f: child.send_signal(s)) for s in forwarded}
        try:
            rc = child.wait()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

        if used.exists():  # the child imported numba
            note = f" (replacing the inherited NUMBA_CACHE_DIR={inherited})" if inherited else ""
            if n_seeded:
                origin = f"seeded with {n_seeded} files from {template}"
            elif seed:
                origin = f"empty: no template at {template}, so numba compiled from scratch (run `aria warm-jit-cache`)"
            else:
                origin = "empty"
            if verbose or inherited or (seed and not n_seeded):
                print(f"aria: private numba cache {cache}, {origin}{note}", file=sys.stderr, flush=True)
            compiled = sum(1 for k, t in _cache_files(cache).items() if before.get(k) != t)
            if compiled and rc == 0 and n_seeded:
                print(f"aria: numba compiled {compiled} cache files that the template lacks", file=sys.stderr)
        if rc < 0:
            working_on = marker.read_text(encoding="utf-8").strip() if marker.exists() else None
            sys.stderr.write(crash_report(command, -rc, working_on or None, str(cache)))
            sys.stderr.flush()
            return 128 - rc
        return rc
    finally:
        shutil.rmtree(root, ignore_errors=True)
