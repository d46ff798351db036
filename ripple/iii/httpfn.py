"""HTTP-invoked functions: a worker registers a function with an ``invocation`` (``{url, method?, timeout_ms?,
headers?, auth?}``) and ripple calls that URL itself, as the engine does, whenever the function is invoked or a trigger
fires it.

The request is the call's data as JSON, with the engine's headers (``x-iii-Function-Path``, ``x-iii-Invocation-ID``,
``x-iii-Timestamp``) and the registered ones. ``auth`` names environment variables *of the ripple process*: ``hmac``
signs ``<timestamp>:<base64 body>`` with HMAC-SHA256 (``x-iii-Signature: sha256=<hex>``), ``bearer`` sends a bearer
token, ``api_key`` a header. A 2xx answer's JSON (or nothing) is the result; any other status is an error, taken from
an ``{"error": {code, message}}`` body when there is one. Unlike the engine, ripple applies no URL allowlist: whoever
may connect a worker may already make requests of their own.

Each call is one HTTP/1.1 request on its own connection, headers and body written in one piece (as the engine's
client does; some minimal receivers read a request with a single ``recv``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import ssl
import time
import urllib.parse
import uuid
from typing import Any

import msgspec

from ripple.iii.protocol import IIIError

DEFAULT_TIMEOUT_MS = 30_000
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class Auth(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class Hmac(Auth, frozen=True, tag="hmac"):
    secret_key: str


class Bearer(Auth, frozen=True, tag="bearer"):
    token_key: str


class ApiKey(Auth, frozen=True, tag="api_key"):
    header: str
    value_key: str


class Invocation(msgspec.Struct, frozen=True):
    url: str
    method: str | None = None  # POST
    timeout_ms: int | None = None
    headers: dict[str, str] | None = None
    auth: Hmac | Bearer | ApiKey | None = None


def parse_invocation(raw: Any) -> Invocation:
    """A ``registerfunction``'s ``invocation``; raises :class:`IIIError` when it cannot be used."""
    try:
        invocation = msgspec.convert(raw, Invocation)
    except msgspec.ValidationError as exc:
        raise IIIError("invalid_invocation", f"invalid HTTP invocation: {exc}") from None
    if (invocation.method or "POST").upper() not in METHODS:
        raise IIIError("invalid_invocation", f"unsupported HTTP method {invocation.method!r}")
    if not invocation.url.startswith(("http://", "https://")):
        raise IIIError("invalid_invocation", f"the invocation URL must be http(s): {invocation.url!r}")
    return invocation


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise IIIError(
            "missing_env_var", f"Missing environment variable '{name}' for {what} authentication of ripple's process."
        )
    return value


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The engine's request signature: HMAC-SHA256 over ``<timestamp>:<base64 body>``."""
    payload = f"{timestamp}:{base64.b64encode(body).decode()}".encode()
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def _error(status: int, reason: str, raw: bytes) -> IIIError:
    try:
        found = msgspec.json.decode(raw).get("error")
    except (msgspec.DecodeError, AttributeError):
        found = None
    if isinstance(found, dict):
        code = found.get("code")
        message = found.get("message")
        return IIIError(
            code if isinstance(code, str) else "http_error",
            message if isinstance(message, str) else "HTTP request failed",
        )
    return IIIError("http_error", f"HTTP {status} {reason}")


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readline()
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        return await reader.readexactly(int(length))
    return await reader.read()  # until the server closes


async def _exchange(url: str, method: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
    """One HTTP/1.1 request on its own connection, written in one piece; the whole response."""
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl.create_default_context() if secure else None)
    try:
        writer.write(request)
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1").strip()
        _, code, reason = [*status_line.split(" ", 2), "", ""][:3]
        if not code.isdigit():
            raise ValueError(f"not an HTTP response: {status_line!r}")
        found: dict[str, str] = {}
        while (line := (await reader.readline()).decode("latin-1").strip()) != "":
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        return int(code), reason, await _read_body(reader, found)
    finally:
        writer.close()


class HttpFunctions:
    async def call(self, function_id: str, invocation: Invocation, data: Any) -> Any:
        body = msgspec.json.encode(data)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "x-iii-Function-Path": function_id,
            "x-iii-Invocation-ID": str(uuid.uuid4()),
            "x-iii-Timestamp": str(timestamp),
            **(invocation.headers or {}),
        }
        auth = invocation.auth
        if isinstance(auth, Hmac):
            headers["x-iii-Signature"] = sign(body, _env(auth.secret_key, "HMAC"), timestamp)
        elif isinstance(auth, Bearer):
            headers["Authorization"] = f"Bearer {_env(auth.token_key, 'Bearer token')}"
        elif isinstance(auth, ApiKey):
            headers[auth.header] = _env(auth.value_key, "API key")
        method = (invocation.method or "POST").upper()
        timeout = (invocation.timeout_ms or DEFAULT_TIMEOUT_MS) / 1000
        try:
            async with asyncio.timeout(timeout):
                status, reason, raw = await _exchange(invocation.url, method, headers, body)
        except TimeoutError:
            raise IIIError("http_request_failed", f"calling {invocation.url} timed out after {timeout} s") from None
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            raise IIIError("http_request_failed", f"calling {invocation.url} failed: {exc}") from None
        if 200 <= status < 400:
            if not raw:
                return msgspec.UNSET
            try:
                return msgspec.json.decode(raw)
            except msgspec.DecodeError as exc:
                if status < 300:
                    raise IIIError("invalid_response", str(exc)) from None
                return msgspec.UNSET  # a redirect's page: no result, no error (as the engine)
        raise _error(status, reason, raw)
