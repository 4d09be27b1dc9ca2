"""The real daemon speaks the systemd notify protocol: READY=1 once it serves,
WATCHDOG=1 only while its loop turns, RELOADING=1/READY=1 around SIGHUP,
STOPPING=1 on SIGTERM. systemd is played by a real datagram socket."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from notify_listener import Message, NotifyListener


def is_ready(message: Message) -> bool:
    return message.get("READY") == "1"


def watchdog_pings(notify_listener: NotifyListener) -> int:
    return sum(1 for m in notify_listener.messages() if m.get("WATCHDOG") == "1")


def test_ready_comes_once_the_models_are_loaded_and_the_port_answers(
    start_daemon, models_dir: Path, notify_listener: NotifyListener
) -> None:
    daemon = start_daemon(models_dir, env={"NOTIFY_SOCKET": notify_listener.address}, healthy=False)

    before_and_ready = notify_listener.wait_for(is_ready)

    # At the moment systemd hears READY=1, the daemon answers.
    assert daemon.get("/health").status == 200
    *before, ready = before_and_ready
    assert before and "loading models" in before[0]["STATUS"]
    assert not any(is_ready(m) for m in before)
    assert "serving 1 model(s)" in ready["STATUS"] and "TINY3.SA" in ready["STATUS"]
    assert "WATCHDOG" not in str(notify_listener.messages())  # no WATCHDOG_USEC, no pings


def test_a_daemon_that_cannot_load_its_models_never_says_ready(
    start_daemon, models_dir: Path, notify_listener: NotifyListener
) -> None:
    (models_dir / "TINY3.SA" / "model.onnx").write_bytes(b"corrupted")
    daemon = start_daemon(models_dir, env={"NOTIFY_SOCKET": notify_listener.address}, healthy=False)

    assert daemon.process.wait(60) != 0
    assert not any(is_ready(m) for m in notify_listener.messages())


def test_watchdog_pings_at_half_the_interval_and_stop_while_the_daemon_is_frozen(
    start_daemon, models_dir: Path, notify_path_listener: NotifyListener
) -> None:
    # WATCHDOG_USEC = 1 s: a ping every 0.5 s.
    env = {"NOTIFY_SOCKET": notify_path_listener.address, "WATCHDOG_USEC": "1000000"}
    daemon = start_daemon(models_dir, env=env, healthy=False)
    notify_path_listener.wait_for(is_ready)

    time.sleep(3)
    alive = watchdog_pings(notify_path_listener)

    daemon.signal(signal.SIGSTOP)  # a wedged event loop, as far as systemd can tell
    time.sleep(0.3)
    notify_path_listener.messages()  # a ping already in flight
    time.sleep(2)
    frozen = watchdog_pings(notify_path_listener)

    daemon.signal(signal.SIGCONT)
    time.sleep(2)
    resumed = watchdog_pings(notify_path_listener)

    assert 3 <= alive <= 9  # about 6
    assert frozen == 0
    assert resumed >= 2
    assert daemon.stop() == 0


def test_a_watchdog_armed_for_another_process_is_left_alone(
    start_daemon, models_dir: Path, notify_path_listener: NotifyListener
) -> None:
    env = {"NOTIFY_SOCKET": notify_path_listener.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    start_daemon(models_dir, env=env, healthy=False)
    notify_path_listener.wait_for(is_ready)

    time.sleep(1)

    assert watchdog_pings(notify_path_listener) == 0


def test_sighup_reports_reloading_then_ready_and_sigterm_reports_stopping(
    start_daemon, models_dir: Path, notify_path_listener: NotifyListener
) -> None:
    daemon = start_daemon(models_dir, env={"NOTIFY_SOCKET": notify_path_listener.address}, healthy=False)
    notify_path_listener.wait_for(is_ready)

    daemon.signal(signal.SIGHUP)
    reload = notify_path_listener.wait_for(is_ready, timeout=30)

    reloading = [m for m in reload if m.get("RELOADING") == "1"]
    assert len(reloading) == 1 and int(reloading[0]["MONOTONIC_USEC"]) > 0
    assert reload.index(reloading[0]) < len(reload) - 1  # RELOADING=1 before READY=1
    assert reload[-1]["STATUS"].startswith("reloaded: serving")

    daemon.signal(signal.SIGTERM)
    stopping = notify_path_listener.wait_for(lambda m: m.get("STOPPING") == "1", timeout=30)
    assert "draining" in stopping[-1]["STATUS"]
    assert daemon.process.wait(30) == 0
