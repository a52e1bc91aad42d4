"""The fake process table and the backend opener the registry backend
tests share (tests/test_registry_backends*.py): pids are built directly and
"death" is a set of dead uids that the fake ``is_alive`` consults."""

from __future__ import annotations

from otp._pid import Pid, new_uid
from otp.registry import MemoryBackend, SQLiteBackend

KINDS = ["memory", "sqlite"]


class World:
    """Fake process table: every pid is alive until killed."""

    def __init__(self) -> None:
        self.dead: set[int] = set()

    def is_alive(self, pid: Pid) -> bool:
        return pid.uid not in self.dead

    @staticmethod
    def spawn(ospid: int = 100) -> Pid:
        return Pid("n@h", new_uid(), ospid, 0)

    def kill(self, pid: Pid) -> None:
        self.dead.add(pid.uid)


def open_kind(kind, world, path, mode="unique"):
    if kind == "memory":
        return MemoryBackend(is_alive=world.is_alive, mode=mode)
    return SQLiteBackend(path, is_alive=world.is_alive, mode=mode)
