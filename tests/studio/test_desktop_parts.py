"""The desktop app's parts that need no screen: the applications-menu entry, which finished jobs make a
notification, and the one-app-per-data-dir socket."""

from __future__ import annotations

import threading
from datetime import timedelta
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client

import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from assets import ICON_SIZES
from engine.data.db import session_scope
from engine.data.tables import Job, JobStatus, utcnow
from studio.desktop import instance
from studio.desktop.app import JobNotices, studio_url
from studio.desktop.instance import SingleInstance, ask_running_to_focus


def test_install_puts_the_entry_and_the_icons_in_the_users_menu(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["desktop", "--install"])
    assert result.exit_code == 0, result.output
    entry = (tmp_path / "applications" / "imagestudio.desktop").read_text()
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))
    assert exec_line.endswith(" desktop") and exec_line.split("=", 1)[1].startswith("/")  # this venv's command
    assert "Icon=imagestudio" in entry and "Type=Application" in entry
    for size in ICON_SIZES:
        icon = tmp_path / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "imagestudio.png"
        assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "icons" / "hicolor" / "scalable" / "apps" / "imagestudio.svg").exists()


def test_a_notification_for_each_long_job_that_finished_once(engine):
    notices = JobNotices(engine, after_s=20)
    now = utcnow()
    with session_scope(engine.db) as session:
        for order, (prompt, status, seconds) in enumerate((
                ("a long fox", JobStatus.SUCCEEDED, 45), ("a quick fox", JobStatus.SUCCEEDED, 3),
                ("a broken fox", JobStatus.FAILED, 29), ("a dropped fox", JobStatus.CANCELLED, 60))):
            finished = now + timedelta(seconds=1 + order)  # finished one after the other, after the first look
            session.add(Job(status=status, params={"prompt": prompt, "model": "tiny-sd"},
                            created_at=finished - timedelta(seconds=seconds), finished_at=finished))
        session.commit()
    found = notices.poll()
    assert [(n.title, n.body) for n in found] == [("Image ready", "“a long fox” · tiny-sd · 45 s"),
                                                  ("Generation failed", "“a broken fox” · tiny-sd · 29 s")]
    assert notices.poll() == []  # each job once


def test_the_window_opens_the_studio_on_loopback():
    assert studio_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/"
    assert studio_url("192.168.1.5", 9000) == "http://192.168.1.5:9000/"


def test_one_app_per_data_dir_a_second_launch_asks_the_first_to_focus(tmp_path):
    focused = threading.Event()
    first = SingleInstance.claim(tmp_path, on_focus=focused.set)
    assert first is not None
    try:
        assert SingleInstance.claim(tmp_path, on_focus=lambda: None) is None  # the second launch
        assert focused.wait(5)
        other_dir = tmp_path / "other"
        second = SingleInstance.claim(other_dir, on_focus=lambda: None)  # another data dir: its own app
        assert second is not None
        second.close()
    finally:
        first.close()
    assert not ask_running_to_focus(tmp_path)  # closed: the next launch is the app


def test_the_socket_refuses_a_caller_without_the_key(tmp_path):
    focused = threading.Event()
    first = SingleInstance.claim(tmp_path, on_focus=focused.set)
    try:
        address, family = instance._address(tmp_path)
        with pytest.raises(AuthenticationError):
            Client(address, family=family, authkey=b"not the key")
        assert not focused.is_set()
        assert ask_running_to_focus(tmp_path)  # and still answers the ones that have it
        assert (tmp_path / "desktop.key").stat().st_mode & 0o077 == 0
    finally:
        first.close()


def test_launches_racing_for_a_new_data_dir_agree_on_one_key(tmp_path):
    keys, start = [], threading.Barrier(8)

    def launch():
        start.wait()
        keys.append(instance._authkey(tmp_path))

    threads = [threading.Thread(target=launch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert [path.name for path in tmp_path.iterdir()] == ["desktop.key"]  # no partial key left behind
