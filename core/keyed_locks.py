"""Per-key locks in one process (one user's submissions take turns), dropped when unused."""

from __future__ import annotations

import threading


class KeyedLocks:
    """One lock per key, dropped again when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, KeyLock] = {}

    def lock_for(self, key: str) -> KeyLock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = KeyLock(self, key)
            lock.users += 1
            return lock

    def _done(self, lock: KeyLock) -> None:
        with self._guard:
            lock.users -= 1
            if lock.users == 0:
                self._locks.pop(lock.key, None)


class KeyLock:
    def __init__(self, owner: KeyedLocks, key: str) -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self.key = key
        self.users = 0

    def acquire(self, timeout: float) -> bool:
        """Take the lock within `timeout` seconds; on False the caller must not release it."""
        if self._lock.acquire(timeout=timeout):
            return True
        self._owner._done(self)
        return False

    def release(self) -> None:
        self._lock.release()
        self._owner._done(self)
