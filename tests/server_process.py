"""The real server in a subprocess, on 127.0.0.1, with a data dir of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, models_dir: Path, **extra: str) -> dict[str, str]:
    env = os.environ | {"IMAGESTUDIO_DATA_DIR": str(data_dir), "IMAGESTUDIO_MODELS_PATH": str(models_dir),
                        "IMAGESTUDIO_DEVICE": "cpu", "IMAGESTUDIO_DEFAULT_MODEL": "tiny-sd",
                        "IMAGESTUDIO_ALLOW_DOWNLOADS": "false", "IMAGESTUDIO_STUDIO_ENABLED": "false",
                        "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    env.pop("IMAGESTUDIO_SECRET_KEY", None)  # the generated one in the data dir is part of what is tested
    return env | extra


def create_key(env: dict[str, str], email: str, plan: str = "pro") -> str:
    out = subprocess.run([sys.executable, "-m", "api.cli", "keys", "create", "--email", email, "--plan", plan],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


class Server:
    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Server:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(self.port),
                                          "--log-level", "warning"], env=self.env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/api/v1/health", timeout=1).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 15)


def stop_process(proc: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, and SIGKILL if it is still there after ``timeout``; the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
