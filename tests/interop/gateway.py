"""The real binary for the interop checks: a free port, and a gateway run from
a config text until the block ends (its log in the data dir)."""

import contextlib
import os
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(binary, data_dir, config, admin):
    """Writes `config` into `data_dir`, starts `hookgate serve` on it, waits
    until `admin`'s /healthz answers, and stops it when the block ends."""
    cfg = os.path.join(data_dir, "hookgate.toml")
    with open(cfg, "w") as f:
        f.write(config)
    proc = subprocess.Popen([binary, "serve", "--config", cfg], stderr=open(os.path.join(data_dir, "log"), "w"))
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://{admin}/healthz", timeout=1)
                break
            except Exception:
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
