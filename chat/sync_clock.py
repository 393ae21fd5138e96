"""The per-user sync clock that makes pull cursors exact.

Locking contract: `tick()` must run inside the writer's transaction. It takes
the user's clock row lock and holds it to commit, so versions become visible
in the order they were handed out: once a pull sees version v, every version
below v is committed. Every write path (exchanges, push, admin, REST) stamps
the rows it changes with the value `tick()` returns.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from chat.models import SyncClock


def lock(user_id: int) -> int:
    """Take the user's clock row lock (the per-user writer mutex, held to commit) and return the
    clock's value; creates the clock on a user's first write. Inside the writer's transaction."""
    SyncClock.objects.get_or_create(user_id=user_id)
    return SyncClock.objects.select_for_update().filter(user_id=user_id).values_list("version", flat=True).get()


def tick(user_id: int) -> int:
    assert transaction.get_connection().in_atomic_block, "tick() must run inside the writer's transaction"
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        # One round trip: the UPDATE takes the row lock and returns the new value.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {SyncClock._meta.db_table} SET version = version + 1 WHERE user_id = %s RETURNING version",
                [user_id],
            )
            row = cursor.fetchone()
        if row is not None:
            return row[0]
    elif SyncClock.objects.filter(user_id=user_id).update(version=F("version") + 1):
        return SyncClock.objects.values_list("version", flat=True).get(user_id=user_id)
    SyncClock.objects.get_or_create(user_id=user_id)
    SyncClock.objects.filter(user_id=user_id).update(version=F("version") + 1)
    return SyncClock.objects.values_list("version", flat=True).get(user_id=user_id)


def current(user_id: int) -> int:
    return SyncClock.objects.filter(user_id=user_id).values_list("version", flat=True).first() or 0
