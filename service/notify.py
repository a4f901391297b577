"""systemd notifications (sd_notify): READY=1, WATCHDOG=1, STATUS=..., STOPPING=1.

The protocol is one datagram of ``KEY=VALUE`` lines to the unix socket named by ``$NOTIFY_SOCKET``
(``@name`` is a socket in the abstract namespace). Without that variable, outside systemd, every
call does nothing. Sends never block (a full queue drops the message), and a failed send is logged
once and never stops the service.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state changes to systemd when it runs the process (``Type=notify``)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is named with a leading NUL byte; systemd writes it as '@'.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_seconds: float | None = int(usec) / 1e6 if usec.isdigit() and mine else None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, **state: str) -> bool:
        """Send ``KEY=value`` lines (e.g. ``READY="1"``); True when systemd got them."""
        if not self._address:
            return False
        message = "\n".join(f"{k}={v}" for k, v in state.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a reader that stopped reading must not stall the loop
                sock.connect(self._address)
                sock.send(message)
        except OSError as err:
            if not self._warned:
                log.warning("sd_notify failed", extra={"error": str(err)})
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING="1", STATUS=status)
