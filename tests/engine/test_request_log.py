"""The API request log is written in batches off the request path; reading it sees every request so far."""

from sqlmodel import select

from engine.data.db import session_scope
from engine.data.request_log import RequestLog
from engine.data.tables import ApiLog


def entry(i: int, user_id: str = "usr_a") -> ApiLog:
    return ApiLog(user_id=user_id, method="GET", endpoint="/api/v1/usage", status=200, duration_ms=1,
                  request_id=f"req_{i}")


def test_rows_are_batched_and_reading_flushes_first(engine):
    log = RequestLog(engine.db)
    assert all(log.write(entry(i)) for i in range(300))
    assert [row.request_id for row in log.recent("usr_a", limit=3)] == ["req_299", "req_298", "req_297"]
    with session_scope(engine.db) as session:
        assert len(session.exec(select(ApiLog).where(ApiLog.user_id == "usr_a")).all()) == 300
    log.close()


def test_a_database_that_refuses_the_rows_never_reaches_the_request(engine, monkeypatch, caplog):
    log = RequestLog(engine.db)

    def refuse(*_args, **_kwargs):
        from engine.errors import DatabaseBusy

        raise DatabaseBusy("busy")

    monkeypatch.setattr("engine.data.request_log.session_scope", refuse)
    log._closing.wait = lambda _s: None  # no backoff in the test
    assert log.write(entry(1)) is True  # queued: the request goes on
    log.flush()
    assert "could not be written and are lost" in caplog.text
