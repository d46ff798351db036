"""One HTTP request through its ``http`` trigger, as the current engine runs it (III-PROTOCOL §4.2).

The request's raw body is written into a channel the handler can read (``request_body``), and the handler can stream
its response into another (``response``: text frames ``set_status``/``set_headers``, then binary body chunks) instead
of returning ``{status_code, headers, body}``. Before the handler: the trigger's condition, then each of its
``middleware_function_ids`` (``{action: "continue"}`` or ``{action: "respond", response}``).

A handler that returns nothing and never writes to its response channel would make the engine wait until its timeout
(504). With the compatibility rules on (R-4) ripple waits :data:`WRITER_GRACE` seconds for the response channel's writer
to connect and otherwise answers ``200 null``; ``--iii-strict`` waits like the engine.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from ripple.iii.channels import Channel
from ripple.iii.protocol import (
    JSON_HEADERS,
    HttpReply,
    HttpTriggerConfig,
    IIIError,
    api_request,
    error_reply,
    http_reply,
    parse_body,
)

if TYPE_CHECKING:
    from ripple.iii.engine import Engine

log = logging.getLogger("ripple.iii")

BODY_CHUNK = 64 * 1024
WRITER_GRACE = 2.0  # seconds a handler that returned nothing has to start its streamed response
_json = msgspec.json.Encoder()


class StreamingReply:
    """A response the handler streams through its channel: status and headers, then the body chunks."""

    def __init__(self, status: int, headers: list[tuple[str, str]], chunks: AsyncGenerator[bytes, None]) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks


class Control(msgspec.Struct):
    type: str = ""
    status_code: Any = None
    headers: Any = None


_control = msgspec.json.Decoder(Control)


class ResponseState:
    """What the handler's ``set_status``/``set_headers`` messages have set so far."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}

    def apply(self, message: str) -> None:
        try:
            control = _control.decode(message)
        except msgspec.DecodeError:
            return
        if control.type == "set_status":
            code = control.status_code
            if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
                self.status = code
        elif control.type == "set_headers" and isinstance(control.headers, dict):
            for name, value in control.headers.items():
                if isinstance(value, str):
                    self.headers[name.lower()] = value

    def header_list(self) -> list[tuple[str, str]]:
        return list(self.headers.items())


async def _write_body(channel: Channel, raw: bytes) -> None:
    for start in range(0, len(raw), BODY_CHUNK):
        await channel.put(raw[start : start + BODY_CHUNK])
    channel.end()


async def _body_chunks(
    first: bytes | None, items: AsyncIterator[str | bytes], done: Any
) -> AsyncGenerator[bytes, None]:
    try:
        if first is not None:
            yield first
        async for item in items:
            if isinstance(item, bytes):
                yield item
    finally:
        done()


class HttpRoutes:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def request(
        self, method: str, path: str, query_string: str, headers: list[tuple[str, str]], raw: bytes
    ) -> HttpReply | StreamingReply:
        engine = self.engine
        found = engine.registry.route(method, path)
        if found is None:
            return error_reply(404, "NOT_FOUND", f"no route for {method} {path}")
        entry, params = found
        config = entry.config
        assert isinstance(config, HttpTriggerConfig)
        content_type = next((v for n, v in headers if n.lower() == "content-type"), "")
        request = api_request(
            pattern=config.api_path,
            method=method,
            path_params=params,
            query_string=query_string,
            headers=headers,
            body=parse_body(content_type, raw),
            compat=engine.compat,
        )
        try:
            if config.condition_function_id is not None:
                if await engine.invoke(config.condition_function_id, request) is False:
                    return error_reply(422, "CONDITION_NOT_MET", "Request condition not met", skipped=True)
            for middleware in config.middleware_function_ids:
                stop = await self._middleware(middleware, request)
                if stop is not None:
                    return stop
        except IIIError as exc:
            return self._failure(exc)
        return await self._call(entry.function_id, entry.metadata, request, raw)

    async def _middleware(self, function_id: str, request: dict[str, Any]) -> HttpReply | None:
        """Run one middleware; a reply short-circuits the request (the engine's ``respond`` action)."""
        data = {
            "phase": "preHandler",
            "request": {k: request[k] for k in ("path_params", "query_params", "headers", "method")},
            "context": {},
        }
        result = await self.engine.invoke(function_id, data)
        if not isinstance(result, dict) or result.get("action") != "respond":
            return None  # "continue", nothing, or an unknown action: on to the handler, as the engine
        response = result.get("response")
        response = response if isinstance(response, dict) else {}
        status = response.get("status_code")
        status = status if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599 else 200
        headers = list(JSON_HEADERS)
        extra = response.get("headers")
        if isinstance(extra, dict):
            headers = [(k.lower(), v) for k, v in extra.items() if isinstance(v, str)]
            if not any(n == "content-type" for n, _ in headers):
                headers.append(("content-type", "application/json"))
        return HttpReply(status, headers, _json.encode(response.get("body")))

    @staticmethod
    def _failure(exc: IIIError) -> HttpReply:
        status = 504 if exc.code in ("timeout", "TIMEOUT") else 500
        return error_reply(status, exc.code, exc.message, error_id=str(uuid.uuid4()))

    async def _call(
        self, function_id: str, metadata: Any, request: dict[str, Any], raw: bytes
    ) -> HttpReply | StreamingReply:
        engine = self.engine
        body_channel = engine.channels.create()
        response_channel = engine.channels.create()
        body_channel.writer_taken = response_channel.reader_taken = True  # ripple holds these ends
        _, body_reader = body_channel.refs()
        response_writer, _ = response_channel.refs()
        request = {
            **request,
            "request_body": msgspec.to_builtins(body_reader),
            "response": msgspec.to_builtins(response_writer),
        }
        writer = asyncio.ensure_future(_write_body(body_channel, raw))
        call = asyncio.ensure_future(engine.invoke(function_id, request, metadata=metadata))

        def done() -> None:
            writer.cancel()
            engine.channels.remove(body_channel)
            engine.channels.remove(response_channel)

        try:
            reply = await self._race(call, response_channel, done)
        except BaseException:
            call.cancel()
            done()
            raise
        if isinstance(reply, HttpReply):
            done()
        if not call.done():  # a streamed response: the handler may still be running; log how it ends
            call.add_done_callback(_log_late_failure(function_id))
        return reply

    async def _race(self, call: asyncio.Future[Any], channel: Channel, done: Any) -> HttpReply | StreamingReply:
        """Control messages and the first body chunk win over the call's result (the engine's biased select)."""
        state = ResponseState()
        items = channel.drain()
        next_item: asyncio.Future[str | bytes] | None = None
        try:
            while True:
                if next_item is None:
                    next_item = asyncio.ensure_future(anext(items))
                if call.done():
                    # The call returned nothing: the streamed response is the reply. Bounded like a call.
                    finished, _ = await asyncio.wait({next_item}, timeout=self.engine.call_timeout)
                    if not finished:
                        return self._failure(IIIError("timeout", "the handler returned nothing and streamed nothing"))
                else:
                    finished, _ = await asyncio.wait({next_item, call}, return_when=asyncio.FIRST_COMPLETED)
                if next_item in finished:
                    try:
                        item = next_item.result()
                    except StopAsyncIteration:  # the writer ended without a body
                        next_item = None
                        return StreamingReply(state.status, state.header_list(), _body_chunks(None, items, done))
                    next_item = None
                    if isinstance(item, str):
                        state.apply(item)
                        continue
                    return StreamingReply(state.status, state.header_list(), _body_chunks(item, items, done))
                reply = await self._result(call, channel, next_item)
                if reply is not None:
                    return reply
        finally:
            if next_item is not None and not next_item.done():
                next_item.cancel()

    async def _result(
        self, call: asyncio.Future[Any], channel: Channel, next_item: asyncio.Future[Any]
    ) -> HttpReply | None:
        """The call finished before any body chunk: its result is the reply, unless it returned nothing (then the
        response channel decides; ``None`` means keep reading it)."""
        try:
            result = call.result()
        except IIIError as exc:
            return self._failure(exc)
        compat = self.engine.compat
        if result is not msgspec.UNSET and (result is not None or compat):
            return http_reply(result, compat=compat)
        if not compat or channel.writer_arrived.is_set():
            return None  # as the engine: wait for the streamed response
        arrived = asyncio.ensure_future(channel.writer_arrived.wait())
        try:
            await asyncio.wait({next_item, arrived}, timeout=WRITER_GRACE, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
        if next_item.done() or channel.writer_arrived.is_set():
            return None
        return http_reply(None, compat=True)  # nothing returned, nothing streamed → 200 null, never hang


def _log_late_failure(function_id: str) -> Any:
    def check(call: asyncio.Future[Any]) -> None:
        if not call.cancelled() and isinstance(call.exception(), IIIError):
            exc = call.exception()
            assert isinstance(exc, IIIError)
            log.warning("http handler %s failed after streaming began: %s %s", function_id, exc.code, exc.message)

    return check
