"""sd_notify by hand: datagrams to $NOTIFY_SOCKET (a path or an abstract '@name'), nothing without
it, and the watchdog interval read from $WATCHDOG_USEC."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from service.notify import Notifier


@pytest.mark.parametrize("abstract", [False, True])
def test_notifications_reach_the_socket(abstract: bool, tmp_path: Path) -> None:
    if abstract:
        name = f"@smapds-test-{uuid.uuid4().hex}"
        address: str = "\0" + name[1:]
    else:
        name = address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "120000000"})
        assert notifier.enabled and notifier.watchdog_seconds == 120.0
        assert notifier.ready("serving demo")
        assert server.recv(4096) == b"READY=1\nSTATUS=serving demo"
        assert notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping("bye")
        assert server.recv(4096) == b"STOPPING=1\nSTATUS=bye"


def test_without_systemd_nothing_is_sent_and_a_dead_socket_is_no_error(tmp_path: Path) -> None:
    quiet = Notifier({})
    assert not quiet.enabled and quiet.watchdog_seconds is None and not quiet.ready("x")
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert not gone.watchdog() and not gone.watchdog()  # logged once, never raised


def test_the_watchdog_is_for_the_main_process_only() -> None:
    other = Notifier({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_seconds is None
    mine = Notifier({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_seconds == 5.0
