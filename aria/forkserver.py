"""An opt-in fork server: ``aria`` jobs forked from a process that has already imported the libraries.

The problem
-----------
A workflow job is a fresh Python process. Before it computes anything it imports numpy, zarr and
the job modules (about 1 s here) and, for a job that touches a model, torch (2.4 s) and, through
``torch.func``'s per-example gradients, ``torch._dynamo`` (2 s more). A tiny run of 200 jobs that
each compute for under a second spends most of its time importing: the test suite and small demos
on a laptop are dominated by it.

What it does
------------
With ``ARIA_FORKSERVER=1`` in the environment, the supervisor (:func:`aria.runtime.supervise`)
asks a *server* to run the job instead of starting ``python -m aria``. The server is one process
per environment that imported those libraries once and then forks a copy of itself for every job:

* The first job of an environment runs the usual way and starts the server in the background
  (it detaches and outlives the job); later jobs connect to it. A server exits after
  :data:`IDLE_S` seconds without a job.
* A server is keyed on everything an import may have read: the interpreter, every environment
  variable (except the shell's bookkeeping, ``PWD``, ``OLDPWD``, ``SHLVL``, ``_``, and pytest's
  ``PYTEST_CURRENT_TEST``) and the modification times of Aria's own sources. A job whose
  environment or code differs gets a server of its own, so an edit to ``aria/`` is never run by a
  server started before it.
* The forked job gets the supervisor's standard input, output and error (passed over the Unix
  socket), its working directory, umask and environment, and runs exactly what ``python -m aria``
  runs (:func:`aria.cli.entry`, supervised). Its exit status or the signal that ended it goes back
  to the supervisor, which reports a crash as it would for a child of its own. Signals the
  supervisor receives are forwarded to the job; if the supervisor dies (Snakemake cancelling, a
  SIGKILL), the job is killed too.
* The server imports numba (librosa) never: each job still reads its own private JIT cache
  (:mod:`aria.runtime`). It runs no torch operation, so torch's OpenMP pool does not exist yet
  when it forks.

Its limits: Snakemake's ``benchmark`` records a job's process tree, and a forked job is not in
the supervisor's tree, so the recorded CPU time and peak memory are the supervisor's (wall time is
right). Hence it is off by default: ``make demo`` and cluster runs (it is never used under SLURM,
where each job must stay in its own allocation) measure every job's cost; ``make test`` turns it
on, as only wall time matters there. It needs Linux (``SCM_RIGHTS``) and is skipped elsewhere.

Only the standard library is imported here (the supervisor must start fast); the server's imports
happen in :func:`serve`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["ENV", "enabled", "spawn", "serve", "IDLE_S"]

#: Set to 1 to run jobs through the fork server.
ENV = "ARIA_FORKSERVER"
#: Seconds a server waits for a job before it exits.
IDLE_S = 60.0
#: Seconds after which a server that was started but never came up may be started again.
START_S = 120.0
#: Environment variables that differ between otherwise equal jobs and that no import reads.
_VOLATILE = {"PWD", "OLDPWD", "SHLVL", "_", "PYTEST_CURRENT_TEST"}
#: Libraries the server imports before it forks (each is optional).
PRELOAD = ("numpy", "zarr", "torch", "torch._dynamo", "torch.func")
_MAX_MSG = 1 << 20


def enabled(env: dict | None = None) -> bool:
    """Whether jobs go through the fork server: opted in, on Linux, not inside a SLURM job."""
    env = os.environ if env is None else env
    return env.get(ENV) == "1" and sys.platform.startswith("linux") and "SLURM_JOB_ID" not in env


def _sources_stamp() -> str:
    """Modification times and sizes of Aria's own sources (an edit changes the server's key)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                st = os.stat(os.path.join(dirpath, f))
                h.update(f"{dirpath}/{f}:{st.st_mtime_ns}:{st.st_size}\n".encode())
    return h.hexdigest()


def server_key(env: dict) -> str:
    """The key of the server that may run a job with environment ``env`` (module docstring)."""
    h = hashlib.sha256()
    h.update(f"{sys.executable}\n{sys.prefix}\n{sys.version}\n{os.getuid()}\n".encode())
    for k in sorted(env):
        if k not in _VOLATILE:
            h.update(f"{k}={env[k]}\0".encode())
    h.update(_sources_stamp().encode())
    return h.hexdigest()[:24]


def socket_path(key: str) -> Path:
    """``$TMPDIR/aria-forkserver-<uid>/<key>.sock``, or under ``/tmp`` where that path is too long for
    a Unix socket (108 bytes on Linux, with room for the server's temporary name); the folder is
    private to the user.
    """
    for base in (os.environ.get("TMPDIR") or "/tmp", "/tmp"):
        d = Path(base) / f"aria-forkserver-{os.getuid()}"
        path = d / f"{key}.sock"
        if len(os.fsencode(path)) + 12 > 107:
            continue
        d.mkdir(mode=0o700, exist_ok=True)
        if d.stat().st_uid != os.getuid() or (d.stat().st_mode & 0o077):
            raise PermissionError(f"{d} is not private to this user")
        return path
    raise OSError("no folder short enough for a Unix socket")


def _send(sock: socket.socket, doc: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(doc).encode() + b"\n"
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def _recv_line(sock: socket.socket, buf: bytearray) -> dict | None:
    """The next JSON line from ``sock`` (None at end of stream)."""
    while b"\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > _MAX_MSG:
            raise ValueError("fork server message too long")
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return json.loads(line)


class ForkedJob:
    """A job running in the fork server: the part of :class:`subprocess.Popen` the supervisor uses."""

    def __init__(self, sock: socket.socket, pid: int, buf: bytearray):
        self._sock, self.pid, self._buf = sock, pid, buf
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        """The job's exit status, or ``-signal`` when a signal ended it (as Popen reports it)."""
        if self.returncode is None:
            try:
                msg = _recv_line(self._sock, self._buf)
            finally:
                self._sock.close()
            if msg is None or "status" not in msg:
                sys.stderr.write("aria: the fork server lost the job (its process ended without a status)\n")
                self.returncode = 1
            else:
                self.returncode = os.waitstatus_to_exitcode(msg["status"])
        return self.returncode


def _starting(path: Path) -> Path:
    return path.with_name(path.name + ".starting")


def _claim_start(path: Path) -> bool:
    """Whether this job should start the server of ``path``: no other job started one within
    :data:`START_S` seconds (the mark a server that failed to start leaves behind expires).
    """
    mark = _starting(path)
    try:
        if time.time() - mark.stat().st_mtime < START_S:
            return False
        mark.unlink()
    except FileNotFoundError:
        pass
    try:
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def _start_server(path: Path, key: str, env: dict) -> None:
    """Start a server for ``key`` in the background; it detaches from this job."""
    try:
        with open(path.with_suffix(".log"), "wb") as log:  # why a server did not come up
            subprocess.Popen(
                [sys.executable, "-m", "aria.forkserver", str(path), key],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
    except OSError:
        pass


def spawn(argv: list[str], env: dict) -> ForkedJob | None:
    """Run ``aria <argv>`` with environment ``env`` in the fork server.

    Returns None when no server of this environment is ready: the caller runs the job itself,
    and a server is started for the jobs that follow.

    Parameters
    ----------
    argv : list of str
        The ``aria`` arguments (without the program).
    env : dict
        The job's whole environment (the supervisor's, with its private cache and markers).
    """
    shared = {k: v for k, v in env.items() if k not in _JOB_ONLY}
    try:
        key = server_key(shared)
        path = socket_path(key)
    except OSError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        if _claim_start(path):  # one server per key: jobs starting together start it once
            _start_server(path, key, shared)
        return None
    buf, opened = bytearray(), []
    try:
        fds = []
        for fd in (0, 1, 2):  # a closed standard stream is /dev/null in the job
            try:
                os.fstat(fd)
                fds.append(fd)
            except OSError:
                opened.append(os.open(os.devnull, os.O_RDWR))
                fds.append(opened[-1])
        _send(sock, {"argv": argv, "cwd": os.getcwd(), "env": env, "umask": _umask()}, fds)
        msg = _recv_line(sock, buf)
    except (OSError, ValueError):
        msg = None
    finally:
        for fd in opened:
            os.close(fd)
    if msg is None or "pid" not in msg:  # the server went away before forking: run it here
        sock.close()
        return None
    return ForkedJob(sock, int(msg["pid"]), buf)


#: Set by the supervisor for one job only: not part of the server's key or environment.
_JOB_ONLY = ("NUMBA_CACHE_DIR", "ARIA_PROGRESS_FILE", "ARIA_JIT_USED_FILE", "ARIA_SUPERVISED")


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# --------------------------------------------------------------------------- the server
def _run_job(req: dict, fds: list[int]) -> None:
    """In the forked job: take over the client's stdio, directory and environment; run the command."""
    for i, fd in enumerate(fds[:3]):
        os.dup2(fd, i)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(req["cwd"])
    os.umask(int(req["umask"]))
    os.environ.clear()
    os.environ.update(req["env"])
    sys.argv = ["aria", *req["argv"]]
    rc = 1
    try:
        from aria.cli import entry

        rc = entry(list(req["argv"]))
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        rc = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
        finally:
            for f in (sys.stdout, sys.stderr):
                try:
                    f.flush()
                except Exception:
                    pass
            os._exit(int(rc or 0) & 0xFF)


def _handle(conn: socket.socket) -> None:
    """In the process forked per connection: fork the job, report its pid and then its status."""
    buf = bytearray()
    try:
        data, fds, _flags, _addr = socket.recv_fds(conn, _MAX_MSG, 8)
        buf += data
        req = _recv_line(conn, buf)
    except (OSError, ValueError):
        req = None
    if req is None:
        os._exit(1)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_job(req, fds)
    for fd in fds:
        os.close(fd)
    _send(conn, {"pid": pid})

    def watch():  # the client went away (cancelled, killed): the job must not outlive it
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    threading.Thread(target=watch, daemon=True).start()
    _, status = os.waitpid(pid, 0)
    try:
        _send(conn, {"status": status})
    except OSError:
        pass
    os._exit(0)


def serve(path: str | os.PathLike, key: str, *, idle_s: float = IDLE_S) -> int:
    """Import the libraries, then fork a job for every connection on ``path`` until idle.

    The socket is bound under a temporary name and renamed into place only once the imports are
    done, so a client never waits for a server that is still starting. Returns 0, or 1 when the
    server could not start safely (a library started a Python thread while importing).
    """
    path = Path(path)
    try:
        return _serve(path, key, idle_s)
    finally:
        _starting(path).unlink(missing_ok=True)  # up, or given up: the next job may start one


def _serve(path: Path, key: str, idle_s: float) -> int:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    from aria.cli import build_parser

    build_parser()  # imports every job module
    if threading.active_count() != 1:  # forking a process with Python threads is unsafe
        return 1
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    sock.bind(str(tmp))
    sock.listen(64)
    os.rename(tmp, path)
    _starting(path).unlink(missing_ok=True)
    ino = path.stat().st_ino
    sock.settimeout(1.0)
    last = time.monotonic()
    try:
        while True:
            try:
                while os.waitpid(-1, os.WNOHANG)[0] > 0:  # reap the finished per-connection processes
                    pass
            except ChildProcessError:
                pass
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                try:
                    replaced = path.stat().st_ino != ino
                except FileNotFoundError:
                    replaced = True
                if replaced or time.monotonic() - last > idle_s:
                    return 0
                continue
            last = time.monotonic()
            conn.settimeout(None)
            if os.fork() == 0:
                sock.close()
                _handle(conn)
            conn.close()
    finally:
        sock.close()
        try:
            if path.stat().st_ino == ino:
                path.unlink()
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2]))
