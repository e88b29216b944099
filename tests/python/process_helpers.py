"""A `keystead` child process for the multi-process tests: start, kill -9, stop, log tail."""
import subprocess
from pathlib import Path
from typing import List, Optional


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
