"""A `keystead` child process for the multi-process tests: start, kill -9, stop, log tail."""
import subprocess
import time
from pathlib import Path
from typing import List, Optional

import requests


class Proc:
    def __init__(self, binary: str, name: str, args: List[str], log: Path):
        self.binary, self.name, self.args, self.log = binary, name, args, log
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log, "ab") as log:
            log.write(f"\n===== start {self.name} =====\n".encode())
            self.proc = subprocess.Popen([self.binary, *self.args], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_healthz(proc: "Proc", url: str, ca: str, timeout: float) -> None:
    """Until `url`/healthz answers 200 (bounded); fails at once if `proc` exits."""
    from keystead_helpers import make_session
    deadline = time.monotonic() + timeout
    session = make_session(ca)
    while time.monotonic() < deadline:
        if not proc.alive:
            raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            if session.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{proc.name} not healthy:\n{proc.tail()}")
