"""Faults lose nothing: kill -9 mid-run, corrupt checkpoints, NaN losses, full disks, broken downloads."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fpt.run.config import build_config
from fpt.storage.downloads import Remote, fetch, sha256_of
from fpt.errors import FptError
from fpt.run.train import train

STEPS, EVAL_EVERY = 60, 5


def train_argv(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fpt", "train", "--task", "bit-xor", "--model", str(model),
            "--steps", str(STEPS), "--eval-every", str(EVAL_EVERY), "--batch-size", "8",
            "--out", str(out), "--no-progress", *extra]


def metric_lines(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]


def test_kill_9_at_random_moments_then_resume_is_bit_identical(tmp_path, tiny_gpt2):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    whole = tmp_path / "whole"
    subprocess.run(train_argv(tiny_gpt2, whole), check=True, env=env, capture_output=True, timeout=300)

    cut = tmp_path / "cut"
    rng = random.Random(0)
    kills = 0
    for target_lines in (2, 5, 8):  # kill once the run has passed these evaluations, after a random delay
        proc = subprocess.Popen(train_argv(tiny_gpt2, cut, "--resume"), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while metric_lines(cut) < target_lines and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert not (cut / "result.json").exists() or proc.returncode == 0
    assert kills >= 2
    done = subprocess.run(train_argv(tiny_gpt2, cut, "--resume"), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr

    a = json.loads((whole / "result.json").read_text())
    b = json.loads((cut / "result.json").read_text())
    assert a["test"] == b["test"] and a["best_val"] == b["best_val"]
    rows = lambda d: [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert without_timing(rows(whole)) == without_timing(rows(cut))
    for name in ("model.safetensors", "last.safetensors"):
        wa, wb = load_file(whole / name), load_file(cut / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    assert not list(cut.glob(".*.tmp"))


def test_corrupt_last_checkpoint_is_refused_by_name(tmp_path, tiny_gpt2):
    cfg = dict(task="bit-xor", model=str(tiny_gpt2), steps=10, eval_every=5, out=str(tmp_path / "r"),
               progress=False)
    train(build_config(cfg))
    (tmp_path / "r" / "result.json").unlink()  # pretend it was killed before finishing
    last = tmp_path / "r" / "last.safetensors"
    last.write_bytes(last.read_bytes()[:-50])
    with pytest.raises(FptError, match="last.safetensors' is corrupted or truncated"):
        train(build_config({**cfg, "resume": True}))


def _nan_at_step(monkeypatch, bad_step: int) -> None:
    from fpt.tasks.bits import BitXor
    real = BitXor.train_batch

    def poisoned(self, step, batch_size, seed):
        batch = real(self, step, batch_size, seed)
        if step == bad_step:
            batch.x[0, 0, 0] = float("nan")
        return batch

    monkeypatch.setattr(BitXor, "train_batch", poisoned)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_gpt2, monkeypatch):
    _nan_at_step(monkeypatch, bad_step=7)
    cfg = dict(task="bit-xor", model=str(tiny_gpt2), steps=10, eval_every=5, out=str(tmp_path / "n"),
               progress=False)
    with pytest.raises(FptError, match="loss became nan at step 8.*last good checkpoint"):
        train(build_config(cfg))
    meta_step = json.loads(open(tmp_path / "n" / "metrics.jsonl").read().splitlines()[-1])["step"]
    assert meta_step == 5
    assert load_file(tmp_path / "n" / "last.safetensors")  # intact and readable
    result = train(build_config({**cfg, "resume": True, "nan_policy": "skip"}))
    assert result["skipped_steps"] == 1


def test_full_disk_is_a_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    from fpt.storage import files as checkpoint

    target = tmp_path / "result.json"
    checkpoint.atomic_write_json(target, {"old": True})

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fsync", no_space)
    with pytest.raises(FptError, match="No space left on device"):
        checkpoint.atomic_write_json(target, {"new": True})
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_unwritable_out_dir_is_a_clear_error(tmp_path, tiny_gpt2):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = dict(task="bit-xor", model=str(tiny_gpt2), steps=5, out=str(blocker), progress=False)
    with pytest.raises(FptError, match="is a file, not a directory"):
        train(build_config(cfg))
    with pytest.raises(FptError, match="cannot write in"):
        from fpt.storage.files import atomic_write
        atomic_write(blocker / "x.json", b"{}")


class _FlakyServer:
    """A loopback HTTP server with Range support that can cut a response in the middle."""

    def __init__(self, payload: bytes):
        self.payload, self.cut_after = payload, None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                start = 0
                if "Range" in self.headers:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                body = outer.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is not None:
                    self.wfile.write(body[:outer.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection breaks half-way
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data.bin"

    def close(self):
        self.server.shutdown()


def test_broken_download_is_resumed_and_verified(tmp_path):
    payload = os.urandom(300_000)
    server = _FlakyServer(payload)
    try:
        (tmp_path / "want").write_bytes(payload)
        remote = Remote(server.url, "data.bin", sha256=sha256_of(tmp_path / "want"), size=len(payload))
        server.cut_after = 100_000
        with pytest.raises(FptError):
            fetch(remote, tmp_path / "cache", progress=False)
        partial = tmp_path / "cache" / "data.bin.part"
        assert partial.exists() and not (tmp_path / "cache" / "data.bin").exists()
        assert 0 < partial.stat().st_size < len(payload)
        server.cut_after = None
        path = fetch(remote, tmp_path / "cache", progress=False)
        assert path.read_bytes() == payload and not partial.exists()
        # A wrong file in the cache is never used: it is fetched again.
        path.write_bytes(b"tampered")
        assert fetch(remote, tmp_path / "cache", progress=False).read_bytes() == payload
    finally:
        server.close()


def test_download_without_network_names_file_and_place(tmp_path):
    remote = Remote("http://127.0.0.1:9/none.bin", "none.bin", size=10)
    with pytest.raises(FptError, match=r"cannot download .*put it at .*none.bin"):
        fetch(remote, tmp_path, progress=False)


def test_two_processes_never_train_in_the_same_directory(tmp_path):
    from fpt.storage.files import exclusive

    with exclusive(tmp_path / "run"):
        probe = subprocess.run(
            [sys.executable, "-c", "from pathlib import Path; from fpt.storage.files import exclusive\n"
             f"with exclusive(Path({str(tmp_path / 'run')!r})): pass"],
            capture_output=True, text=True, timeout=120)
        assert probe.returncode != 0 and "another fpt process is training" in probe.stderr
    with exclusive(tmp_path / "run"):  # released when its holder is done
        pass


def test_kill_9_of_a_sweep_then_restart_finishes_without_redoing_runs(tmp_path, tiny_gpt2):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"description: kill test\nbase: {{task: bit-xor, model: {tiny_gpt2}, steps: 30, eval_every: 5,"
                    " batch_size: 8}\ngrid: {seed: [0, 1, 2, 3]}\nworkers: 1\n")
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "fpt", "sweep", str(spec), "--out", str(out), "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    finished = lambda: sorted(p.parent.name for p in (out / "runs").glob("*/result.json"))
    while len(finished()) < 1 and time.time() < deadline:  # kill once one run has finished...
        time.sleep(0.05)
    while not list((out / "runs").glob("*/metrics.jsonl")) or len(list((out / "runs").glob("*/metrics.jsonl"))) < 2:
        time.sleep(0.05)                                     # ...and the next one is under way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {name: (out / "runs" / name / "result.json").read_bytes() for name in finished()}
    assert 1 <= len(done_before) < 4
    time.sleep(0.5)  # the killed sweep's worker dies with it (PDEATHSIG)
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{len(done_before)} already finished" in again.stderr
    assert len(finished()) == 4
    for name, content in done_before.items():  # finished runs were not redone
        assert (out / "runs" / name / "result.json").read_bytes() == content
