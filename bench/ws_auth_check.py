"""The cost of re-checking open sockets' credentials (accounts/ws_auth.py's `live_credentials`).

    DATABASE_URL=postgres://root@127.0.0.1:5432/chatlima_bench .venv/bin/python bench/ws_auth_check.py

Every `CHATLIMA_WS_AUTH_CHECK_SECONDS` (5 s) each server process asks the database which of its
sockets' tokens and sessions still authenticate, in one read for all of them. This creates N knox
tokens and N database sessions, then times that read for N sockets of each kind (half tokens, half
sessions), and, for comparison, the one-query-per-socket way (a primary-key lookup each). Prints
milliseconds per check and microseconds per socket per check. Migrates the database first (and
creates it when it is a missing PostgreSQL database). Options: --sockets 1,100,1000,5000 --repeat R.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatlima.settings")


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", default="1,100,1000,5000")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from sync_load import ensure_database

    ensure_database()
    import django

    django.setup()
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.core.management import call_command
    from django.db import connection
    from knox.models import AuthToken

    from accounts.models import User
    from accounts.ws_auth import Credential, live_credentials

    call_command("migrate", verbosity=0, interactive=False)
    sizes = [int(n) for n in args.sockets.split(",")]
    most = max(sizes)
    user = User.objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}", password=uuid.uuid4().hex)
    tokens, sessions = [], []
    try:
        for _ in range(most):
            tokens.append(Credential("token", AuthToken.objects.create(user)[0].digest))
            store = SessionStore()
            store["_auth_user_id"] = str(user.pk)
            store.create()
            sessions.append(Credential("session", store.session_key))
        print(f"database: {connection.vendor} ({connection.settings_dict['NAME']}); "
              f"{AuthToken.objects.count()} tokens, {Session.objects.count()} sessions in the tables")
        for n in sizes:
            watched = tokens[: (n + 1) // 2] + sessions[: n // 2]
            assert live_credentials(watched) == set(watched)
            batched = best_of(args.repeat, lambda watched=watched: live_credentials(watched))

            def one_by_one(watched=watched) -> None:
                for c in watched:
                    if c.kind == "token":
                        AuthToken.objects.filter(digest=c.key).exists()
                    else:
                        Session.objects.filter(session_key=c.key).exists()

            single = best_of(max(1, args.repeat // 4), one_by_one)
            print(f"{n:6d} sockets: one read {batched * 1e3:8.2f} ms/check = {batched / n * 1e6:7.1f} us/socket; "
                  f"a query each {single * 1e3:9.2f} ms/check = {single / n * 1e6:7.1f} us/socket")
    finally:
        Session.objects.filter(session_key__in=[c.key for c in sessions]).delete()
        user.delete()


if __name__ == "__main__":
    main()
