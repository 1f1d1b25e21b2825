"""Process identities: a process on this box that died (even by SIGKILL) is seen dead at once; a live one,
or one this box knows nothing of, is not."""

import subprocess
import sys
import textwrap

from engine.leases import ProcessIdentity


def test_a_killed_process_is_seen_dead_and_a_live_one_alive(tmp_path):
    me = ProcessIdentity(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from engine.leases import ProcessIdentity
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
