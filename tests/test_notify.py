"""The systemd notify protocol, spoken to a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from lstm_predictor.daemon.notify import Notifier, socket_address
from notify_listener import NotifyListener


def test_without_notify_socket_everything_is_a_quiet_no_op() -> None:
    notifier = Notifier.from_env({"WATCHDOG_USEC": "2000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("ready")
    notifier.stopping("bye")
    asyncio.run(asyncio.wait_for(notifier.watchdog_loop(_always(True)), 5))  # returns at once


def test_state_changes_arrive_as_datagrams(notify_listener: NotifyListener) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_listener.address})
    assert notifier.enabled

    notifier.ready("serving 1 model")
    notifier.status("still serving")
    notifier.reloading("reloading models")
    notifier.ready("serving 2 models")
    notifier.stopping("draining")

    got = notify_listener.messages()
    assert got[0] == {"READY": "1", "STATUS": "serving 1 model"}
    assert got[1] == {"STATUS": "still serving"}
    assert got[2]["RELOADING"] == "1" and got[2]["STATUS"] == "reloading models"
    assert got[3] == {"READY": "1", "STATUS": "serving 2 models"}
    assert got[4] == {"STOPPING": "1", "STATUS": "draining"}
    assert len(got) == 5


def test_reloading_carries_the_monotonic_clock_that_notify_reload_needs(notify_path_listener: NotifyListener) -> None:
    before = _monotonic_usec()
    Notifier.from_env({"NOTIFY_SOCKET": notify_path_listener.address}).reloading("reloading")
    after = _monotonic_usec()
    (message,) = notify_path_listener.messages()
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_a_multi_line_status_cannot_inject_other_assignments(notify_path_listener: NotifyListener) -> None:
    Notifier.from_env({"NOTIFY_SOCKET": notify_path_listener.address}).status("bad model\nREADY=1")
    assert notify_path_listener.messages() == [{"STATUS": "bad model READY=1"}]


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="lstm_predictor.daemon.notify"):
        notifier.ready("ready")
        notifier.status("status")
        notifier.stopping("bye")
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1


def test_unsupported_socket_addresses_disable_notifications() -> None:
    assert socket_address("vsock:2:1234") is None
    assert socket_address("@") is None
    assert socket_address("@sd") == "\0sd"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert not Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only(notify_path_listener: NotifyListener) -> None:
    env_value = notify_path_listener.address
    base = {"NOTIFY_SOCKET": env_value, "WATCHDOG_USEC": "20000000"}
    assert Notifier.from_env(base).watchdog_interval == 10.0
    assert Notifier.from_env({**base, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 10.0
    assert Notifier.from_env({**base, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval is None
    assert Notifier.from_env({**base, "WATCHDOG_USEC": "0"}).watchdog_interval is None
    assert Notifier.from_env({"NOTIFY_SOCKET": env_value}).watchdog_interval is None


def test_watchdog_pings_at_its_interval_while_alive(notify_path_listener: NotifyListener) -> None:
    # WATCHDOG_USEC = 0.2 s -> a ping every 0.1 s; over 1 s that is about 10.
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_path_listener.address, "WATCHDOG_USEC": "200000"})
    asyncio.run(_run_for(notifier.watchdog_loop(_always(True)), 1.0))
    pings = [m for m in notify_path_listener.messages() if m == {"WATCHDOG": "1"}]
    assert 4 <= len(pings) <= 12


def test_watchdog_withholds_pings_while_liveness_fails_and_resumes_after(notify_path_listener: NotifyListener) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_path_listener.address, "WATCHDOG_USEC": "200000"})
    healthy = True

    async def liveness() -> bool:
        return healthy

    async def scenario() -> tuple[int, int, int]:
        nonlocal healthy
        task = asyncio.create_task(notifier.watchdog_loop(liveness))
        await asyncio.sleep(0.6)
        alive_pings = len(notify_path_listener.messages())
        healthy = False
        await asyncio.sleep(0.15)  # let a check that was already in flight land
        notify_path_listener.messages()
        await asyncio.sleep(0.8)
        dead_pings = len(notify_path_listener.messages())
        healthy = True
        await asyncio.sleep(0.6)
        resumed_pings = len(notify_path_listener.messages())
        task.cancel()
        return alive_pings, dead_pings, resumed_pings

    alive, dead, resumed = asyncio.run(scenario())
    assert alive >= 2
    assert dead == 0
    assert resumed >= 2


def test_a_liveness_check_that_raises_or_hangs_counts_as_dead(notify_path_listener: NotifyListener) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_path_listener.address, "WATCHDOG_USEC": "200000"})

    async def raises() -> bool:
        raise RuntimeError("engine gone")

    async def hangs() -> bool:
        await asyncio.sleep(3600)
        return True

    asyncio.run(_run_for(notifier.watchdog_loop(raises), 0.6))
    asyncio.run(_run_for(notifier.watchdog_loop(hangs), 0.6))
    assert notify_path_listener.messages() == []


def _always(value: bool):
    async def liveness() -> bool:
        return value

    return liveness


async def _run_for(coro, seconds: float) -> None:
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(seconds)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
