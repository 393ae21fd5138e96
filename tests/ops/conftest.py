from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal

import pytest

from accounts.models import User
from tests.conftest import make_user
from tests.e2e.conftest import e2e_db  # noqa: F401 - a database real server processes share
from usage.models import ApiUsageLog

_ids = itertools.count(1)


def make_log(user: User, created_at: datetime, **fields) -> ApiUsageLog:
    prompt = fields.pop("prompt_tokens", 10)
    completion = fields.pop("completion_tokens", 20)
    defaults = {
        "request_id": f"msg_{next(_ids)}_testrow00",
        "provider": "openai",
        "model_name": "gpt-4o-mini",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost_estimate": Decimal("0.00012345"),
        "status": ApiUsageLog.Status.SUCCESS,
        "usage_source": ApiUsageLog.Source.PROVIDER,
    }
    defaults.update(fields)
    return ApiUsageLog.objects.create(user=user, created_at=created_at, **defaults)


def user_in(username: str, tz: str) -> User:
    user = make_user(username)
    User.objects.filter(pk=user.pk).update(timezone=tz)
    user.refresh_from_db()
    return user


@pytest.fixture
def staff(db) -> User:
    user = make_user("staffer")
    user.is_staff = True
    user.is_superuser = True
    user.save()
    return user


def expected_day_figures() -> dict[tuple, tuple]:
    """(local day, user, model) -> (requests, prompt, completion, total) straight from the raw rows."""
    import zoneinfo

    from usage.models import ApiUsageLog

    out: dict[tuple, tuple] = {}
    for log in ApiUsageLog.objects.select_related("user"):
        key = (log.created_at.astimezone(zoneinfo.ZoneInfo(log.user.timezone)).date(), log.user_id, log.model_name)
        n, p, c, t = out.get(key, (0, 0, 0, 0))
        out[key] = (n + 1, p + log.prompt_tokens, c + log.completion_tokens, t + log.total_tokens)
    return out
