from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from tests.ops.conftest import make_log
from usage.models import Budget, BudgetAlert
from usage.signals import exchange_settled

pytestmark = pytest.mark.django_db


@pytest.fixture
def limited(owner):
    owner.email = "owner@example.com"
    owner.save()
    Budget.objects.filter(user=owner).update(token_limit=1000, cost_limit=None, tokens_used=0)
    return owner


def settle(user, tokens_used: int, captured, cost_used: Decimal | None = None) -> None:
    """What the exchange pipeline does: move the budget's figures, then announce the settled exchange."""
    updates = {"tokens_used": tokens_used}
    if cost_used is not None:
        updates["cost_used"] = cost_used
    Budget.objects.filter(user=user).update(**updates)
    log = make_log(user, timezone.now())
    with captured(execute=True):
        exchange_settled.send(sender=None, user_id=user.pk, usage_log_id=log.pk)


def test_alert_fires_once_at_80_percent_then_once_at_100(limited, django_capture_on_commit_callbacks):
    settle(limited, 500, django_capture_on_commit_callbacks)
    assert BudgetAlert.objects.count() == 0

    settle(limited, 800, django_capture_on_commit_callbacks)
    settle(limited, 850, django_capture_on_commit_callbacks)
    settle(limited, 990, django_capture_on_commit_callbacks)
    assert list(BudgetAlert.objects.values_list("threshold", flat=True)) == [80]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["owner@example.com"]
    assert "80%" in mail.outbox[0].subject

    settle(limited, 1000, django_capture_on_commit_callbacks)
    settle(limited, 1200, django_capture_on_commit_callbacks)
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [80, 100]
    assert len(mail.outbox) == 2
    assert "100%" in mail.outbox[1].subject
    assert BudgetAlert.objects.get(threshold=100).emailed_at is not None


def test_alerts_fire_again_in_the_next_period(limited, django_capture_on_commit_callbacks):
    settle(limited, 900, django_capture_on_commit_callbacks)
    assert BudgetAlert.objects.count() == 1
    # The rollover in budgets.py: a new period_start, figures back to zero.
    Budget.objects.filter(user=limited).update(period_start=timezone.now() + timedelta(seconds=1), tokens_used=0)
    settle(limited, 100, django_capture_on_commit_callbacks)
    assert BudgetAlert.objects.count() == 1
    settle(limited, 810, django_capture_on_commit_callbacks)
    assert BudgetAlert.objects.filter(threshold=80).count() == 2
    assert len(mail.outbox) == 2


def test_jumping_past_100_sends_one_notice_and_arms_nothing_more(limited, django_capture_on_commit_callbacks):
    settle(limited, 1500, django_capture_on_commit_callbacks)
    settle(limited, 1600, django_capture_on_commit_callbacks)
    assert list(BudgetAlert.objects.values_list("threshold", flat=True)) == [100]
    assert len(mail.outbox) == 1
    budget = Budget.objects.get(user=limited)
    assert budget.alert_80_sent_at is not None and budget.alert_100_sent_at is not None


def test_cost_limit_alerts_too(limited, django_capture_on_commit_callbacks):
    Budget.objects.filter(user=limited).update(token_limit=None, cost_limit=Decimal("2.00"))
    settle(limited, 10, django_capture_on_commit_callbacks, cost_used=Decimal("1.70"))
    alert = BudgetAlert.objects.get()
    assert alert.threshold == 80
    assert "$1.70 of $2.00" in alert.message


def test_user_without_email_gets_the_in_app_notice_only(owner, django_capture_on_commit_callbacks):
    Budget.objects.filter(user=owner).update(token_limit=100)
    settle(owner, 100, django_capture_on_commit_callbacks)
    assert BudgetAlert.objects.filter(user=owner, threshold=100).exists()
    assert mail.outbox == []


def test_a_concurrent_second_claim_of_the_same_threshold_loses(limited):
    from usage.alerts import _claim

    Budget.objects.filter(user=limited).update(tokens_used=900)
    budget = Budget.objects.get(user=limited)
    stale_copy = Budget.objects.get(user=limited)
    now = datetime.now(UTC)
    assert _claim(budget, 80, now) is True
    assert _claim(stale_copy, 80, now) is False


def test_alerts_show_on_pages_and_can_be_dismissed_by_their_owner_only(
    limited, stranger, client, django_capture_on_commit_callbacks
):
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    from usage.context_processors import budget_alerts

    settle(limited, 850, django_capture_on_commit_callbacks)
    alert = BudgetAlert.objects.get()
    request = RequestFactory().get("/")
    request.user = limited
    html = render_to_string("usage/_alerts.html", budget_alerts(request), request=request)
    assert "80% of your budget used" in html
    assert f"/usage/alerts/{alert.pk}/dismiss" in html

    strangers_request = RequestFactory().get("/")
    strangers_request.user = stranger
    assert "budget" not in render_to_string("usage/_alerts.html", budget_alerts(strangers_request), request=strangers_request)

    client.force_login(stranger)
    assert client.post(f"/usage/alerts/{alert.pk}/dismiss").status_code == 404
    client.force_login(limited)
    response = client.post(f"/usage/alerts/{alert.pk}/dismiss", {"next": "/"})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.dismissed_at is not None
    assert "budget used" not in render_to_string("usage/_alerts.html", budget_alerts(request), request=request)


def test_dismiss_needs_login(client, limited, django_capture_on_commit_callbacks):
    settle(limited, 850, django_capture_on_commit_callbacks)
    alert = BudgetAlert.objects.get()
    response = client.post(f"/usage/alerts/{alert.pk}/dismiss")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    alert.refresh_from_db()
    assert alert.dismissed_at is None


def test_scripts_can_dismiss_with_json(limited, client, django_capture_on_commit_callbacks):
    settle(limited, 1000, django_capture_on_commit_callbacks)
    alert = BudgetAlert.objects.get()
    client.force_login(limited)
    response = client.post(f"/usage/alerts/{alert.pk}/dismiss", HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response.json() == {"dismissed": alert.pk}
    assert BudgetAlert.objects.get().dismissed_at is not None
