"""Two real servers on one database: one is killed with SIGKILL mid-stream and "restarts" (runs the
start-up `settle_interrupted --wait`) while the other keeps streaming.

* the killed server's exchange is settled as `interrupted` with its partial answer, losing at most
  about one save interval (1 s) of the text its client had already seen, charged the estimate of
  the text that was saved, its hold released;
* the other server's streams are left alone by the start-up and finish as `success`.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time

from tests.daphne import ROOT, Daphne
from tests.e2e.conftest import _server_env
from usage.tokens import count_tokens

PACE_MS = 40  # the offline model's words arrive this far apart: a long answer takes several seconds
STALE_SECONDS = 2  # heartbeat window, shortened so the start-up's wait is short
LONG_ASK = "Tell me about budget, cost, token, model and sync, in full."


def _env(url: str) -> dict[str, str]:
    env = _server_env(url)
    env.pop("CHATLIMA_PARTIAL_SAVE_SECONDS", None)  # the default interval (1 s) is what is measured
    env.update({"CHATLIMA_OFFLINE_CHUNK_DELAY_MS": str(PACE_MS),
                "CHATLIMA_HEARTBEAT_STALE_SECONDS": str(STALE_SECONDS), "CHATLIMA_STREAM_BATCH_MS": "0"})
    env.pop("REDIS_URL", None)  # in-memory layer, tasks inline: each server stands alone
    return env


class SSEClient(threading.Thread):
    """POST /api/v1/chat/stream in a thread, recording each chunk with the time it arrived."""

    def __init__(self, port: int, token: str, request_id: str) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.request_id = port, token, request_id
        self.chunks: list[tuple[float, str]] = []
        self.last_type = ""

    @property
    def text(self) -> str:
        return "".join(chunk for _, chunk in self.chunks)

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        body = json.dumps({"message": LONG_ASK, "client_message_id": self.request_id})
        try:
            connection.request("POST", "/api/v1/chat/stream", body=body, headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
            response = connection.getresponse()
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    self.last_type = event["type"]
                    if event["type"] == "stream_chunk":
                        self.chunks.append((time.monotonic(), event["chunk"]))
        except (OSError, http.client.HTTPException, ValueError):
            self.last_type = self.last_type or "dropped"
        finally:
            connection.close()


def test_a_killed_server_loses_at_most_a_second_and_a_restart_leaves_the_other_server_alone(e2e_db, tmp_path):
    victim = Daphne(_env(e2e_db.url), tmp_path, name="victim")
    other = Daphne(_env(e2e_db.url), tmp_path, name="other")
    try:
        victim.start()
        other.start()
        token = victim.register("crashtest", "a-long-crash-password-1")
        dying = SSEClient(victim.port, token, "msg_dying")
        living = [SSEClient(other.port, token, f"msg_living_{n}") for n in range(4)]
        for client in [dying, *living]:
            client.start()
        # Let the answers stream for a while (several saves), then kill the victim outright.
        deadline = time.monotonic() + 20
        while len(dying.chunks) < 60 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(dying.chunks) >= 60, "the stream never got going"
        victim.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.process.wait(timeout=10)
        dying.join(timeout=10)
        seen = dying.text
        # The restart: what `make run` runs when a server starts, while the other server streams on.
        started = time.monotonic()
        restart = subprocess.run([sys.executable, "manage.py", "settle_interrupted", "--wait"], cwd=ROOT,
                                 env=_env(e2e_db.url), capture_output=True, text=True, timeout=60)
        assert restart.returncode == 0, restart.stderr
        assert "settled 1 interrupted" in restart.stdout, restart.stdout
        assert all(client.is_alive() for client in living), "the other server's streams ended before the restart did"
        restart_seconds = time.monotonic() - started
        for client in living:
            client.join(timeout=60)
    finally:
        victim.stop()
        other.stop()

    rows = {r["request_id"]: r for r in e2e_db.rows(
        "SELECT l.request_id, l.status, l.usage_source, l.prompt_tokens, l.completion_tokens, l.total_tokens, "
        "m.content, m.status AS message_status, r.state AS hold FROM api_usage_logs l "
        "JOIN chat_message m ON m.id = l.message_id "
        "JOIN accounts_budgetreservation r ON r.request_id = l.request_id AND r.user_id = l.user_id")}
    dead = rows["msg_dying"]
    assert (dead["status"], dead["message_status"], dead["usage_source"], dead["hold"]) == (
        "interrupted", "interrupted", "estimate", "released")
    stored = dead["content"]
    assert stored and seen.startswith(stored)
    lost = seen[len(stored):]
    # What was lost arrived at the client in the last ~1 s before the kill (one save interval,
    # plus the time a save takes to commit).
    recent = "".join(chunk for at, chunk in dying.chunks if at >= killed_at - 1.3)
    assert len(lost) <= len(recent), (len(lost), len(recent))
    assert dead["completion_tokens"] == count_tokens(stored, "offline-demo")
    assert dead["total_tokens"] == dead["prompt_tokens"] + dead["completion_tokens"]
    print(f"\nkill -9: client had {len(seen)} chars, stored {len(stored)}, lost {len(lost)} "
          f"(arrived in the last 1.3 s: {len(recent)}); restart settle took {restart_seconds:.1f} s")

    for client in living:
        row = rows[client.request_id]
        assert client.last_type == "message_complete", client.last_type
        assert (row["status"], row["message_status"], row["hold"]) == ("success", "complete", "settled")
        assert row["content"] == client.text
