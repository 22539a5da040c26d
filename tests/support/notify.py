"""A stand-in for systemd's notify socket: what a service sent, when, and from which pid.

The socket asks the kernel for each sender's credentials (``SO_PASSCRED``), as
systemd does, so a test can check that only the main process speaks
(``NotifyAccess=main``).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass

UCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True)
class Message:
    at: float  # time.monotonic() when received
    pid: int
    fields: tuple[str, ...]  # "READY=1", "STATUS=..." in the order sent

    def has(self, field: str) -> bool:
        """``"READY=1"`` exactly, or ``"STATUS="`` as a prefix."""
        return any(f == field or (field.endswith("=") and f.startswith(field))
                   for f in self.fields)

    def value(self, name: str) -> str | None:
        return next((f.split("=", 1)[1] for f in self.fields if f.startswith(f"{name}=")),
                    None)


class NotifySocket:
    """Bound to ``address`` (a path, or ``@name`` in the abstract namespace; default:
    a fresh abstract name), collecting every datagram in a thread until closed."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address or f"@hutch-test-notify-{uuid.uuid4().hex}"
        self.messages: list[Message] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        bound = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        self._sock.bind(bound)
        self._sock.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def env(self, watchdog_seconds: float | None = None) -> dict[str, str]:
        """What systemd puts in a ``Type=notify`` service's environment."""
        env = {"NOTIFY_SOCKET": self.address}
        if watchdog_seconds is not None:
            env["WATCHDOG_USEC"] = str(int(watchdog_seconds * 1_000_000))
        return env

    def _collect(self) -> None:
        space = socket.CMSG_SPACE(UCRED.size)
        while not self._closed.is_set():
            try:
                data, ancillary, _, _ = self._sock.recvmsg(4096, space)
            except TimeoutError:
                continue
            except OSError:
                return
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = UCRED.unpack(payload[:UCRED.size])[0]
            fields = tuple(line for line in data.decode().split("\n") if line)
            self.messages.append(Message(time.monotonic(), pid, fields))

    def with_field(self, field: str) -> list[Message]:
        return [m for m in self.messages if m.has(field)]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self._sock.close()
