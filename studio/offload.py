"""Blocking engine calls (the database, files on disk) run off the event loop that serves every browser.

Pages and handlers build the UI on the loop and hand each blocking call to NiceGUI's thread pool with
``await off_loop(fn, *args)``. Nothing in ``studio/`` opens a database session itself: the engine's
methods (``engine.accounts``, ``engine.admin``, ``engine.gallery``, ``engine.meter``, …) own theirs.

What stays on the loop: ``app.storage.user`` (bound to the request's context, which the pool's threads
don't have) and building elements. Read the user id first, then pass it to the thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from nicegui import run

P = ParamSpec("P")
R = TypeVar("R")


async def off_loop(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``run.io_bound(fn, *args, **kwargs)``, with the call's own result, always.

    ``run.io_bound`` answers None, instead of raising, when it is cancelled or the app is stopping (and
    then may not have called ``fn`` at all). A None that looks like "no such user" or "nothing saved"
    would be wrong, so here that case raises ``CancelledError`` (what NiceGUI 4.0's ``io_bound`` will do):
    the page or handler awaiting it ends, and nothing acts on a result that never came.
    """
    box = await run.io_bound(_boxed, fn, args, kwargs)
    if box is None:
        raise asyncio.CancelledError
    return box[0]


def _boxed(fn: Callable[..., R], args: tuple, kwargs: dict) -> tuple[R]:
    return (fn(*args, **kwargs),)
