"""Process identities: a process on this box that died (even by SIGKILL) is seen dead at once; a live one,
or one this box knows nothing of, is not."""

import subprocess
import sys
import textwrap

from engine.data.leases import ProcessIdentity


def test_a_killed_process_is_seen_dead_and_a_live_one_alive(tmp_path):
    me = ProcessIdentity(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from engine.data.leases import ProcessIdentity
        peer = ProcessIdentity(Path({str(tmp_path)!r}))
        print(peer.id, flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    peer_id = holder.stdout.readline().strip()
    try:
        assert me.dead({peer_id, me.id, "proc_on_another_box"}) == set()  # alive, myself, unknown here
        holder.kill()
        holder.wait(10)
        assert me.dead({peer_id}) == {peer_id}  # the lock went with the process
        assert not (tmp_path / f"{peer_id}.lock").exists()
    finally:
        holder.kill()
    me.close()
    assert not (tmp_path / f"{me.id}.lock").exists()


def test_recovery_fails_only_jobs_nobody_vouches_for(engine, monkeypatch):
    from datetime import timedelta

    from engine.data.db import session_scope
    from engine.data.leases import LEASE
    from engine.data.tables import Job, JobStatus, utcnow

    now = utcnow()
    jobs = {"legacy": Job(process_id=None), "expired": Job(process_id="proc_gone", lease_expires_at=now - LEASE),
            "live peer": Job(process_id="proc_peer", lease_expires_at=now + timedelta(seconds=30)),
            "dead peer": Job(process_id="proc_dead", lease_expires_at=now + timedelta(seconds=30)),
            "mine": Job(process_id=engine.identity.id, lease_expires_at=now + timedelta(seconds=30))}
    with session_scope(engine.db) as session:
        session.add_all(jobs.values())
        session.commit()
    monkeypatch.setattr(engine.identity, "dead", lambda ids: {"proc_dead"} & ids)
    assert engine.recover_abandoned()["interrupted_jobs"] == 3
    with session_scope(engine.db) as session:
        status = {name: session.get(Job, job.id).status for name, job in jobs.items()}
    assert status == {"legacy": JobStatus.FAILED, "expired": JobStatus.FAILED, "live peer": JobStatus.QUEUED,
                      "dead peer": JobStatus.FAILED, "mine": JobStatus.QUEUED}
