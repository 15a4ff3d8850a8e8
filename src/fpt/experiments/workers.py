"""A sweep's training runs, each in its own process, started in a fraction of a second.

`python -m fpt train` in a fresh interpreter spends about 5 s importing torch, transformers and
peft before its first step (2-core EPYC, warm disk cache); a comparison of 66 runs paid that 66
times. Here a fork server (multiprocessing's "forkserver") imports them once, and every run is a
fork of it: still its own process (killed alone, its own log, `kill -9` of the sweep takes it
down: it watches the sweep's pid), but with the imports done. The server itself never runs a torch operation, so no OpenMP
thread pool exists when it forks. Where fork servers do not exist (Windows) a run is a plain
`python -m fpt train` subprocess.

A forked run gets the sweep's current working directory and environment explicitly (the server
kept those of the moment it started), its thread count from torch.set_num_threads (OpenMP read
OMP_NUM_THREADS when the server imported torch), and its output in its log file.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import runpy
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Protocol

# What a run imports before its first step; imported once by the fork server (missing ones are skipped).
PRELOAD = ["torch", "transformers", "peft", "fpt.run.train", "fpt.run.setup", "fpt.model",
           "transformers.models.bert.modeling_bert", "transformers.models.llama.modeling_llama",
           "transformers.models.gpt2.modeling_gpt2"]


class Worker(Protocol):
    def poll(self) -> int | None: ...       # the exit code, or None while it runs
    def terminate(self) -> None: ...        # SIGTERM
    def wait(self) -> int | None: ...


class _Forked:
    """A multiprocessing.Process seen through subprocess.Popen's poll / terminate / wait."""

    def __init__(self, process: multiprocessing.process.BaseProcess):
        self.process = process

    def poll(self) -> int | None:
        return self.process.exitcode

    def terminate(self) -> None:
        self.process.terminate()

    def wait(self) -> int | None:
        self.process.join()
        return self.process.exitcode


def start(argv: list[str], log: Path, env: dict[str, str], threads: int) -> Worker:
    """`python -m fpt ARGV` with stdout and stderr appended to `log`, in this environment."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        with open(log, "ab") as handle:  # the child keeps its own copy of the fd
            return subprocess.Popen([sys.executable, "-m", "fpt", *argv], stdout=handle, stderr=subprocess.STDOUT,
                                    env=env, preexec_fn=die_with_parent if os.name == "posix" else None)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # takes effect when the server starts (the first run)
    process = context.Process(target=_run_fpt, args=(argv, str(log), env, os.getcwd(), threads, os.getpid()),
                              daemon=False)
    process.start()
    return _Forked(process)


def _run_fpt(argv: list[str], log: str, env: dict[str, str], cwd: str, threads: int, sweep: int) -> None:
    """In the forked child: become `python -m fpt ARGV` run from `cwd` in `env`, writing to `log`;
    die the moment the process `sweep` ends, however it ends."""
    die_with_parent()  # dies with the fork server too
    _die_with(sweep)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    import torch

    torch.set_num_threads(threads)
    sys.argv = ["fpt", *argv]
    try:
        runpy.run_module("fpt", run_name="__main__", alter_sys=True)  # raises SystemExit(code), as fpt's main does
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _die_with(pid: int) -> None:
    """SIGKILL this process when process `pid` exits (even by kill -9). Its parent is the fork server,
    which outlives the sweep while any of its children runs, so the child watches the sweep itself:
    a thread blocked on a pidfd (Linux 5.3+), or polling once a second elsewhere."""
    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfds here (or the sweep is already gone: poll says so)
            while _alive(pid):
                time.sleep(1.0)
        else:
            select.select([fd], [], [])  # readable once the process has exited
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-sweep", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (even by kill -9)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: orphaned workers finish their run; the directory lock keeps them safe
