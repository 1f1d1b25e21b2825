"""Accessibility basics: every icon-only button has an accessible name; Ctrl+Enter generates."""

import pytest
from nicegui import ui

from tests.studio.conftest import ADMIN_EMAIL, count, eventually, set_value, sign_in

# UI flows: their database calls are the engine's, which the API tests run on PostgreSQL too (CI time).
pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_pass_only]


def unnamed_icon_buttons(user) -> list[str]:
    return [f"{button.props.get('icon')} ({', '.join(button._markers) or 'no marker'})"
            for button in user.find(kind=ui.button).elements
            if not (button.text or "").strip() and not button.props.get("aria-label")]


async def test_every_icon_only_button_has_an_accessible_name(user, engine, admin_account):
    await sign_in(user, ADMIN_EMAIL)
    set_value(user, "model", "tiny-sd")
    user.find(marker="prompt").type("a fox")
    user.find(marker="generate").click()
    await eventually(lambda: count(user, "result") == 1, 30)
    offenders = {"/": unnamed_icon_buttons(user)}
    for path in ("/gallery", "/keys", "/usage", "/settings", "/admin"):
        await user.open(path)
        await user.should_see(marker="page-title")
        offenders[path] = unnamed_icon_buttons(user)
    assert {path: found for path, found in offenders.items() if found} == {}


async def test_ctrl_enter_generates(user, engine, admin_account):
    await sign_in(user, ADMIN_EMAIL)
    set_value(user, "model", "tiny-sd")
    user.find(marker="prompt").type("a fox at dawn")
    user.find(marker="prompt").trigger("keydown.ctrl.enter")
    await eventually(lambda: count(user, "result") == 1, 30)
