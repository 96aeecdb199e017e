"""The opt-in fork server (aria/forkserver.py): a job forked from it is the job started anew.

References: the same ``aria`` command run the usual way (its output, exit status and messages),
and the kernel's view of the processes (a job killed with its supervisor is gone).
All tests share one server: its environment carries a ``sitecustomize`` that makes the arguments
``segv`` and ``sleep`` crash or wait, so that crash reports and signals can be tested.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from aria import forkserver

BIN = Path(sys.executable).parent
HOOKS = """
import aria.cli as cli

_main = cli.main


def main(argv=None):
    if argv and argv[-1] == "segv":
        import ctypes
        ctypes.string_at(0)
    if argv and argv[-1] == "sleep":
        import time
        time.sleep(120)
    return _main(argv)


cli.main = main
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server needs Linux")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """An environment whose jobs go through a server that is up (started by a first job)."""
    root = tmp_path_factory.mktemp("forkserver")
    (root / "inject").mkdir()
    (root / "inject" / "sitecustomize.py").write_text(textwrap.dedent(HOOKS))
    tmp = Path(tempfile.mkdtemp(prefix="afs-", dir="/tmp"))  # short: pytest's own paths may be too long for a socket
    np.save(root / "m.npy", np.random.default_rng(0).normal(size=(40, 6)))
    e = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", forkserver.ENV)}
    e.update(PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}", PYTHONPATH=str(root / "inject"), TMPDIR=str(tmp))
    e[forkserver.ENV] = "1"
    first = _aria(e, root, "diagnose", "m.npy", "--json")
    assert first.returncode == 0, first.stderr
    sockets = tmp / f"aria-forkserver-{os.getuid()}"
    deadline = time.monotonic() + 120
    while not list(sockets.glob("*.sock")):
        assert time.monotonic() < deadline, "the fork server did not come up"
        time.sleep(0.2)
    yield e, root
    for s in sockets.glob("*.sock"):
        s.unlink()  # the server sees its socket gone and exits
    shutil.rmtree(tmp, ignore_errors=True)


def _aria(env, cwd, *args, **kw):
    return subprocess.run([str(BIN / "aria"), *args], env=env, cwd=cwd, capture_output=True, text=True, **kw)


def _forked(stderr):
    return "forked by the fork server" in stderr


def test_a_forked_job_prints_what_a_new_process_prints(env):
    e, root = env
    plain = _aria({k: v for k, v in e.items() if k != forkserver.ENV}, root, "diagnose", "m.npy", "--json")
    forked = _aria(e, root, "-v", "diagnose", "m.npy", "--json")
    assert plain.returncode == forked.returncode == 0
    assert _forked(forked.stderr) and not _forked(plain.stderr)
    assert forked.stdout == plain.stdout and forked.stdout.strip().startswith("{")


def test_exit_status_and_messages_of_a_failing_job(env):
    e, root = env
    plain = _aria({k: v for k, v in e.items() if k != forkserver.ENV}, root, "diagnose", "missing.npy")
    forked = _aria(e, root, "-v", "diagnose", "missing.npy")
    assert _forked(forked.stderr)
    assert forked.returncode == plain.returncode == 2
    assert "missing.npy" in forked.stderr and forked.stderr.endswith(plain.stderr)


def test_a_native_crash_is_reported_as_for_a_child(env):
    e, root = env
    res = _aria(e, root, "-v", "diagnose", "segv")
    assert _forked(res.stderr)
    assert res.returncode == 139
    assert "Fatal Python error: Segmentation fault" in res.stderr  # faulthandler, in the job
    assert "died from signal 11 (SIGSEGV" in res.stderr and "What to try" in res.stderr  # the supervisor


def _start_sleeping(e, root):
    p = subprocess.Popen(
        [str(BIN / "aria"), "-v", "diagnose", "sleep"], env=e, cwd=root, stderr=subprocess.PIPE, text=True
    )
    line = p.stderr.readline()
    assert _forked(line), line
    return p, int(line.rsplit("pid", 1)[1])


def _gone(pid, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_a_signal_to_the_supervisor_reaches_the_job(env):
    e, root = env
    p, pid = _start_sleeping(e, root)
    assert not _gone(pid, within=0.5)
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=30)
    assert rc == 128 + signal.SIGTERM and "stopped by a signal" in p.stderr.read()
    assert _gone(pid)


def test_the_job_dies_with_its_supervisor(env):
    e, root = env
    p, pid = _start_sleeping(e, root)
    p.kill()  # SIGKILL: the supervisor cannot forward anything
    p.wait(timeout=30)
    assert _gone(pid)


def test_key_follows_the_environment_and_the_sources(tmp_path, monkeypatch):
    base = {"PATH": "/bin", "OMP_NUM_THREADS": "1"}
    k = forkserver.server_key(base)
    assert forkserver.server_key({**base, "PWD": "/elsewhere", "_": "/bin/aria"}) == k  # shell bookkeeping
    assert forkserver.server_key({**base, "OMP_NUM_THREADS": "2"}) != k
    assert forkserver.server_key({**base, "ATEN_CPU_CAPABILITY": "avx2"}) != k
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("x = 1\n")
    monkeypatch.setattr(forkserver, "__file__", str(pkg / "forkserver.py"))
    before = forkserver.server_key(base)
    (pkg / "m.py").write_text("x = 22\n")  # an edit: size and time change
    assert forkserver.server_key(base) != before


def test_only_opted_in_on_linux_outside_slurm():
    assert forkserver.enabled({forkserver.ENV: "1"}) == sys.platform.startswith("linux")
    assert not forkserver.enabled({})
    assert not forkserver.enabled({forkserver.ENV: "1", "SLURM_JOB_ID": "7"})


def test_a_socket_path_too_long_for_the_kernel_moves_to_tmp(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    path = forkserver.socket_path("k" * 24)
    assert path.parent == Path("/tmp") / f"aria-forkserver-{os.getuid()}" and len(os.fsencode(path)) + 12 <= 107
    short = Path(tempfile.mkdtemp(prefix="afs-", dir="/tmp"))
    try:
        monkeypatch.setenv("TMPDIR", str(short))
        assert forkserver.socket_path("k" * 24).parent.parent == short
    finally:
        shutil.rmtree(short)
