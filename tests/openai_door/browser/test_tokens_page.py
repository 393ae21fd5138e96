"""The usage page's API tokens in a real browser: create one with the keyboard, see it counted when a
tool uses it through /v1, revoke it; screenshots at 1280 and 390 px, light and dark."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.e2e


def sign_up(page, username: str) -> None:
    page.goto("/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", "a-long-browser-password-1")
    page.fill("#id_password2", "a-long-browser-password-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def chat_through_the_door(server_url: str, token: str) -> dict:
    body = {"model": "offline-demo", "messages": [{"role": "user", "content": "Hello from the IDE"}]}
    request = urllib.request.Request(f"{server_url}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_person_creates_uses_and_revokes_a_named_token(page, server_url, shoot):
    sign_up(page, "token-person")
    page.goto("/usage/")
    name_field = page.get_by_label("Name of a new token")
    name_field.focus()
    page.keyboard.type("the IDE")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Create token"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    secret = page.get_by_label("Token", exact=True).input_value()
    assert page.get_by_text("Copy it now: it is not shown again.").is_visible()
    shoot(page, "api-tokens-new-1280")
    answer = chat_through_the_door(server_url, secret)
    page.reload()
    assert not page.get_by_text("Copy it now").is_visible()  # shown once
    table = page.locator("#tokens-table")
    row = table.get_by_role("row").filter(has=page.get_by_role("rowheader", name="the IDE"))
    cells = row.get_by_role("cell").all_inner_texts()
    assert cells[0] == "1" and cells[1].replace(",", "") == str(answer["usage"]["total_tokens"])
    shoot(page, "api-tokens-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    shoot(page, "api-tokens-390")
    page.emulate_media(color_scheme="dark")
    shoot(page, "api-tokens-390-dark")
    page.set_viewport_size({"width": 1280, "height": 860})
    revoke = page.get_by_role("button", name="Revoke the IDE")
    revoke.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.get_by_role("status").filter(has_text="The API token 'the IDE' is revoked.").is_visible()
    assert page.get_by_text("(revoked)").is_visible()  # its usage stays on the page, marked
    assert page.get_by_role("button", name="Revoke the IDE").count() == 0
    with pytest.raises(urllib.error.HTTPError) as refused:
        chat_through_the_door(server_url, secret)
    assert refused.value.code == 401
