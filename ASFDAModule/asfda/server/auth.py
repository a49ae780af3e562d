"""The per-start token every request must carry (``Authorization: Bearer <token>``), and the Host check.

The backend listens on loopback only, but other local users and any web page the user opens can reach
loopback ports; the token, readable only by the user in ``server.json``, keeps them out. A web page could
still aim its own host name at 127.0.0.1 (DNS rebinding); the ``Host`` check answers only requests addressed
to a loopback name, which such a page cannot send.
"""

from __future__ import annotations

import json
import re
import secrets

BEARER = "bearer"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# a name or an [IPv6 address], then an optional port
HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:]*)(?::\d{1,5})?$")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` (constant-time comparison)."""
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != BEARER:
        return False
    return secrets.compare_digest(value.strip().encode(), token.encode())


class TokenMiddleware:
    """Refuses every HTTP request without the token, before routing: documentation and unknown paths too."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not token_matches(authorization, self.token):
                detail = (
                    "missing or wrong token: send 'Authorization: Bearer <token>' with the token "
                    "from the session's server.json"
                )
                await send_json(send, 401, {"detail": detail}, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


def host_allowed(host: str, extra_names: tuple[str, ...] = ()) -> bool:
    """Whether a ``Host`` header value names this machine's loopback interface, or one of ``extra_names``
    (``asfda serve --allow-host``: the name a reverse proxy forwards), with or without a port."""
    match = HOST_PORT.match(host.strip().lower())
    return match is not None and match.group(1) in (*LOOPBACK_HOSTS, *(n.lower() for n in extra_names))


class HostMiddleware:
    """Refuses (400) every HTTP request whose ``Host`` is not an allowed name, before anything else runs."""

    def __init__(self, app, extra_names: tuple[str, ...] = ()):
        self.app = app
        self.extra_names = tuple(extra_names)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if not host_allowed(host, self.extra_names):
                names = ", ".join((*LOOPBACK_HOSTS, *self.extra_names))
                detail = (
                    f"Host {host[:100]!r} is not this backend's: it answers only requests addressed to "
                    f"{names} (with any port), as a defence against DNS rebinding; start it with "
                    "--allow-host NAME to accept another name"
                )
                await send_json(send, 400, {"detail": detail})
                return
        await self.app(scope, receive, send)


async def send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})
