"""Our programs as real processes: the console scripts (`jinro`, `ingest`) of this interpreter's environment, as an
operator would run them, and `Server`, a real `jinro serve` on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import httpx

if TYPE_CHECKING:
    from tests.support.knowledge_base import KB


def free_port() -> int:
    """A port nothing listens on (bound once and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def console_script(name: str, package: str) -> list[str]:
    """The command that runs our console script `name`: the one installed beside this interpreter, else the one on
    PATH, else `python -c` on `package`'s typer app."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-c", f"from {package} import app; app()"]


def jinro_executable() -> list[str]:
    return console_script("jinro", "assistant.cli")


def ingest_executable() -> list[str]:
    return console_script("ingest", "ingest.cli")


@dataclass
class Server:
    """A real `jinro serve` process; its stdout and stderr go to files under `log_dir`."""

    kb: KB
    log_dir: Path
    workers: int = 1
    args: Sequence[str] = ()
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"serve-{self.port}.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"serve-{self.port}.err"

    def start(self) -> Server:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [*jinro_executable(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", str(self.workers), *self.args]
        self.proc = subprocess.Popen(cmd, env=self.kb.env(**self.env_extra), stdout=self.stdout_path.open("wb"),
                                     stderr=self.stderr_path.open("wb"), start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 120.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"jinro serve exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"jinro serve not ready after {timeout} s:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.stdout_path, self.stderr_path) if p.exists()]
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # uvicorn shuts its workers down on SIGTERM
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
