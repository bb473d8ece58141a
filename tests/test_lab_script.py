"""``scripts/lab.sh``, the README's JupyterLab line, starts a server, root or not.

Run as root (a lab container, a JupyterHub image), a plain ``jupyter lab`` refuses to start without
``--allow-root``; the script adds it exactly then. The test starts the script on a free loopback
port, waits until the server answers, and stops it (the process group it started, by its id).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest

from conftest import ROOT, free_port, stop_process_group

pytestmark = pytest.mark.slow


def test_lab_script_starts_jupyterlab(tmp_path):
    port = free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "lab.sh"), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             "--ServerApp.port_retries=0"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True,
        )
    try:
        version = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2) as r:
                    version = json.loads(r.read())["version"]
                    break
            except OSError:
                time.sleep(0.5)
        text = log.read_text()
        assert proc.poll() is None, f"scripts/lab.sh exited with {proc.returncode}:\n{text[-2000:]}"
        assert version, f"JupyterLab did not answer on port {port} within 120 s:\n{text[-2000:]}"
        # as root, a plain `jupyter lab` exits at once with "Running as root is not recommended"
        assert "Running as root is not recommended" not in text, text[-2000:]
    finally:
        stop_process_group(proc)
