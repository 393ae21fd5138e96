"""The URL fetcher: what it refuses (only loopback targets and stubbed names, never a real
address off this machine), and what it fetches from a local site when private addresses are allowed."""

from __future__ import annotations

import pytest

from chat.attachments.fetch import fetch_url, is_public
from chatlima.errors import ClientError
from tests.attachments.conftest import ARTICLE
from tests.attachments.resolver import StubResolver


def refusal(url: str, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as refused:
        fetch_url(url, **kwargs)
    return refused.value


@pytest.mark.parametrize("address", ["10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "127.8.8.8", "::1",
                                     "169.254.169.254", "fe80::1", "fc00::1", "0.0.0.0", "::", "224.0.0.1",
                                     "ff02::1", "240.0.0.1", "255.255.255.255", "100.64.0.1", "192.0.2.1",
                                     "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1"])
def test_it_counts_only_global_addresses_as_public(address):
    assert not is_public(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_it_counts_global_addresses_as_public(address):
    # Only classified, never connected to.
    assert is_public(address)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://localhost/", "javascript:alert(1)",
                                 "http://", "not a url", ""])
def test_it_refuses_other_schemes_and_bad_urls(url, connections_refused):
    error = refusal(url)
    assert error.code == "INVALID_MESSAGE" and error.details["field"] == "url"
    assert connections_refused == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://localhost:9/", "http://[::1]:9/", "https://127.0.0.1/"])
def test_it_refuses_loopback_targets(site, url):
    error = refusal(url)
    assert error.code == "INVALID_MESSAGE" and error.details["reason"] == "private address"


def test_it_refuses_the_local_site_even_when_it_is_up(site):
    url = site.page("/article.html", ARTICLE)
    assert refusal(url).details["reason"] == "private address"
    assert site.requests == []  # refused before any connection


def test_it_refuses_a_name_that_resolves_to_a_private_address_without_connecting(connections_refused):
    resolver = StubResolver({"intranet.example": ["10.0.0.1"]})
    error = refusal("http://intranet.example/admin", resolver=resolver)
    assert error.details["reason"] == "private address"
    assert resolver.asked == ["intranet.example"]
    assert connections_refused == []  # no connection was even tried


def test_it_refuses_a_name_with_any_private_address_among_public_ones(connections_refused):
    resolver = StubResolver({"mixed.example": ["93.184.216.34", "127.0.0.1"]})
    assert refusal("https://mixed.example/", resolver=resolver).details["reason"] == "private address"
    assert connections_refused == []


def test_it_refuses_ipv4_mapped_and_link_local_answers(connections_refused):
    resolver = StubResolver({"mapped.example": ["::ffff:10.0.0.1"], "metadata.example": ["169.254.169.254"]})
    for url in ("http://mapped.example/", "http://metadata.example/latest/meta-data/"):
        assert refusal(url, resolver=resolver).details["reason"] == "private address"
    assert connections_refused == []


def test_it_refuses_a_name_that_does_not_resolve(connections_refused):
    assert refusal("https://nowhere.invalid/").details["reason"] == "unresolved"
    assert connections_refused == []


@pytest.mark.parametrize("target", ["http://[::1]:{port}/secret", "http://[::ffff:127.0.0.1]:{port}/secret",
                                    "http://127.0.0.2:{port}/secret"])
def test_it_refuses_a_redirect_to_loopback(site, target):
    # Only the site's own address is let through for the first hop (a stand-in for a public
    # page); the redirect's target is checked as every hop is, and refused before it is reached.
    site.page("/secret", "internal only", "text/plain")
    start = site.redirect("/go", target.format(port=site.port))
    error = refusal(start, allowed=lambda address: address == "127.0.0.1")
    assert error.details["reason"] == "private address"
    assert [path for path, _ in site.requests] == ["/go"]


def test_it_refuses_a_redirect_to_a_name_of_a_private_address(site, connections_refused):
    resolver = StubResolver({"127.0.0.1": ["127.0.0.1"], "intranet.example": ["10.0.0.1"]})
    start = site.redirect("/hop", "http://intranet.example/admin")
    error = refusal(start, resolver=resolver, allowed=lambda address: address == "127.0.0.1")
    assert error.details["reason"] == "private address"
    assert resolver.asked == ["127.0.0.1", "intranet.example"]
    assert connections_refused == []


def test_it_refuses_a_redirect_to_file(site, allow_private):
    url = site.redirect("/to-file", "file:///etc/passwd")
    assert refusal(url).details["reason"] == "scheme"


def test_it_fetches_a_local_page_when_private_addresses_are_allowed(site, allow_private):
    url = site.page("/article.html", ARTICLE)
    fetched = fetch_url(url.replace("127.0.0.1", "page.test"))
    assert fetched.data == ARTICLE.encode() and fetched.content_type.startswith("text/html")
    path, headers = site.requests[-1]
    assert path == "/article.html"
    assert headers["Host"] == f"page.test:{site.port}"  # connected to the checked address, named by its host


def test_it_follows_redirects_itself_up_to_the_limit(site, allow_private):
    site.page("/final.txt", "arrived", "text/plain")
    site.redirect("/b", "/final.txt")
    start = site.redirect("/a", site.url("/b"))
    fetched = fetch_url(start)
    assert fetched.data == b"arrived" and fetched.url.endswith("/final.txt")
    site.redirect("/loop", "/loop")
    assert refusal(site.url("/loop"), max_redirects=3).details["reason"] == "redirects"


def test_it_refuses_a_page_over_the_size_cap_while_streaming(site, allow_private):
    url = site.page("/big.txt", b"x" * 50_000, "text/plain", chunked=True)
    error = refusal(url, max_bytes=10_000)
    assert error.code == "PAYLOAD_TOO_LARGE" and error.http_status == 413


def test_it_refuses_a_declared_length_over_the_cap(site, allow_private):
    url = site.page("/big.txt", b"x" * 50_000, "text/plain")
    assert refusal(url, max_bytes=10_000).code == "PAYLOAD_TOO_LARGE"


def test_it_gives_up_on_a_slow_page(site, allow_private):
    url = site.page("/slow.txt", b"y" * 8192, "text/plain", chunked=True, delay=0.3)
    assert refusal(url, timeout=0.5).details["reason"] == "timeout"


def test_it_refuses_an_error_answer(site, allow_private):
    error = refusal(site.url("/missing"))
    assert error.code == "INVALID_MESSAGE" and error.details["status"] == 404
