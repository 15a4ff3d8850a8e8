"""A sweep's run processes: forked from a server with torch imported, yet each one as
`python -m fpt ARGS` run from the sweep's directory, in its environment, into its log."""

from __future__ import annotations

import time

from fpt.experiments.workers import start


def test_a_started_run_uses_the_current_directory_environment_and_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("task: bit-xor\nlr: -1\n")  # relative: found from the cwd
    log = tmp_path / "run.log"
    worker = start(["train", "--config", "bad.yaml"], log, {"PATH": "/usr/bin:/bin", "FPT_MARK": "1"}, threads=1)
    assert worker.wait() == 2  # a user error: fpt's exit code, its one-line message in the log
    assert "fpt train: error: --lr must be a positive finite number" in log.read_text()
    ok = start(["tasks"], log, {"PATH": "/usr/bin:/bin"}, threads=1)
    assert ok.wait() == 0 and "bit-xor" in log.read_text()  # appended


def test_a_started_run_stops_on_terminate(tmp_path):
    worker = start(["train", "--task", "bit-xor", "--steps", "100000", "--out", str(tmp_path / "r")],
                   tmp_path / "log", {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, threads=1)
    time.sleep(1.0)
    assert worker.poll() is None
    worker.terminate()
    assert worker.wait() not in (0, None)
