"""The URL fetcher: a page's bytes, fetched so that a user cannot make the server read its own network.

Rules (API.md "Attachments"):
* only http and https, with a host; anything else (file:, ftp:, javascript:...) is refused;
* the host is resolved (by the injectable resolver, `settings.CHATLIMA_FETCH_RESOLVER`), and if
  ANY of its addresses is not a public one (private, loopback, link-local, multicast, reserved,
  unspecified, shared, documentation; an IPv4 address inside an IPv6 one counts as itself) the
  URL is refused before any connection, unless `CHATLIMA_FETCH_ALLOW_PRIVATE` is on;
* the connection goes to the address that was checked (the URL is rewritten to it; the Host
  header and TLS's SNI and certificate check keep the name), so no second lookup can be rebound;
* redirects are followed here, at most CHATLIMA_FETCH_MAX_REDIRECTS, each hop checked the same;
* CHATLIMA_FETCH_TIMEOUT_SECONDS for the whole fetch; the body is read as a stream and refused
  past CHATLIMA_FETCH_MAX_BYTES (413), whatever Content-Length says;
* no proxy from the environment (`trust_env=False`).
Every refusal is a ClientError (400 INVALID_MESSAGE naming the field `url`, or 413).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from chatlima.errors import ClientError
from chatlima.text import unstorable_character

Resolver = Callable[[str, int], list[str]]
ACCEPT = "text/html, application/xhtml+xml, text/plain, text/markdown, text/csv, application/json, application/pdf;q=0.9, */*;q=0.1"
USER_AGENT = "ChatLima/1.0 (+attachment fetcher)"
URL_CHARS = 2048
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Fetched:
    url: str  # where the body came from, after redirects
    data: bytes
    content_type: str
    charset: str | None
    fetched_at: datetime


def refused(message: str, **details) -> ClientError:
    return ClientError("INVALID_MESSAGE", message, {"field": "url", **details})


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for `host` (an address literal gives itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(info[4][0] for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str) -> bool:
    """Whether `address` is one anyone on the internet could reach: none of private, loopback,
    link-local, multicast, reserved, unspecified or otherwise not global (IPv4 inside IPv6 too)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        candidates.append(inner)
    return all(
        candidate.is_global and not (candidate.is_multicast or candidate.is_private or candidate.is_loopback
                                     or candidate.is_link_local or candidate.is_reserved or candidate.is_unspecified)
        for candidate in candidates
    )


def checked_url(value: str, base: httpx.URL | None = None) -> httpx.URL:
    """`value` (joined to `base` for a redirect) as an http(s) URL with a host, or refused."""
    if not isinstance(value, str) or not value.strip() or len(value) > URL_CHARS or unstorable_character(value):
        raise refused(f"url must be an http or https URL of at most {URL_CHARS} characters.")
    try:
        url = base.join(value.strip()) if base is not None else httpx.URL(value.strip())
    except (httpx.InvalidURL, ValueError, TypeError):
        raise refused("This URL cannot be read.") from None
    if url.scheme not in ("http", "https"):
        raise refused("Only http and https URLs can be fetched.", reason="scheme")
    if not url.raw_host:
        raise refused("This URL has no host.")
    return url


def _host(url: httpx.URL) -> str:
    return url.raw_host.decode("ascii")


def pinned_address(url: httpx.URL, resolver: Resolver, allowed: Callable[[str], bool]) -> str:
    """The address to connect to for `url`: its host resolved once, every address `allowed`."""
    host = _host(url)
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = resolver(host, port)
    if not addresses:
        raise refused("This URL's host cannot be resolved.", reason="unresolved")
    for address in addresses:
        if not allowed(address):
            raise refused("This URL points at a private, loopback or link-local address, which the server "
                              "does not fetch.", reason="private address")
    return addresses[0]


def _host_header(url: httpx.URL) -> str:
    host = _host(url)
    host = f"[{host}]" if ":" in host else host
    return host if url.port is None else f"{host}:{url.port}"


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ClientError("PAYLOAD_TOO_LARGE", f"This page is over {max_bytes:,} bytes.", {"field": "url", "max_bytes": max_bytes})
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise ClientError("PAYLOAD_TOO_LARGE", f"This page is over {max_bytes:,} bytes.", {"field": "url", "max_bytes": max_bytes})
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the whole fetch took too long")
    return bytes(body)


def _anywhere(address: str) -> bool:
    return True


def fetch_url(url: str, *, resolver: Resolver | None = None, allow_private: bool | None = None,
              allowed: Callable[[str], bool] | None = None, timeout: float | None = None,
              max_bytes: int | None = None, max_redirects: int | None = None) -> Fetched:
    """GET `url` by the rules of the module docstring. Blocking network I/O: call it outside any
    transaction. Every argument left None is read from settings; `allowed` (which addresses may
    be connected to) is `is_public` unless private addresses are allowed."""
    resolver = resolver or import_string(settings.CHATLIMA_FETCH_RESOLVER)
    allow_private = settings.CHATLIMA_FETCH_ALLOW_PRIVATE if allow_private is None else allow_private
    timeout = settings.CHATLIMA_FETCH_TIMEOUT_SECONDS if timeout is None else timeout
    max_bytes = settings.CHATLIMA_FETCH_MAX_BYTES if max_bytes is None else max_bytes
    max_redirects = settings.CHATLIMA_FETCH_MAX_REDIRECTS if max_redirects is None else max_redirects
    allowed = allowed or (_anywhere if allow_private else is_public)
    deadline = time.monotonic() + timeout
    current = checked_url(url)
    try:
        with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout) as client:
            for _hop in range(max_redirects + 1):
                address = pinned_address(current, resolver, allowed)
                request = client.build_request(
                    "GET", current.copy_with(host=address),
                    headers={"Host": _host_header(current), "Accept": ACCEPT, "User-Agent": USER_AGENT},
                    extensions={"sni_hostname": _host(current)} if current.scheme == "https" else {},
                )
                response = client.send(request, stream=True)
                try:
                    if response.is_redirect and "location" in response.headers:
                        current = checked_url(response.headers["location"], base=current)
                        continue
                    if response.status_code != 200:
                        raise refused(f"The page answered HTTP {response.status_code}.", status=response.status_code)
                    data = _read_capped(response, max_bytes, deadline)
                finally:
                    response.close()
                return Fetched(url=str(current), data=data, content_type=response.headers.get("content-type", ""),
                               charset=response.charset_encoding, fetched_at=timezone.now())
    except httpx.TimeoutException:
        raise refused(f"The page did not answer within {timeout:g} seconds.", reason="timeout") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise refused(f"The page could not be fetched ({type(exc).__name__}).", reason="unreachable") from None
    raise refused(f"The page redirected more than {max_redirects} times.", reason="redirects")
