"""The per-start token every request must carry (``Authorization: Bearer <token>``).

The backend listens on loopback only, but other local users and any web page the user opens can reach
loopback ports; the token, readable only by the user in ``server.json``, keeps them out.
"""

from __future__ import annotations

import json
import secrets

BEARER = "bearer"


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


async def send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})
