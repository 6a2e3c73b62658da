"""What every private server the tests and the demo start has in common: a child process that
`start` launches (returning once it answers), `stop` ends (`kill=True`: SIGKILL, a crash rather
than a shutdown), `restart` does both, and `close` stops for good and removes its files."""

from __future__ import annotations

import abc
import subprocess
from typing import Self


class LocalServer(abc.ABC):
    process: subprocess.Popen[bytes] | None = None

    @abc.abstractmethod
    def start(self, timeout_s: float = 10.0) -> Self:
        """Launch the server; return once it answers, or raise RuntimeError saying where to look."""

    @abc.abstractmethod
    def stop(self, *, kill: bool = False) -> None:
        """End the process (SIGKILL with kill=True); its files stay for a restart."""

    @abc.abstractmethod
    def remove_files(self) -> None:
        """Delete what the server wrote (called by `close`, after `stop`)."""

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        self.stop()
        self.remove_files()
