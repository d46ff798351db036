"""REST handlers of DESIGN §8. Each handler parses the request, calls the Store, shapes the answer; no SQL here.

Bodies are decoded here with typed msgspec decoders rather than by Litestar's ``data`` parameter, because the
contract separates 400 (not JSON at all) from 422 (JSON of the wrong shape) and wants strict types (``"1"`` is not
a number). Their OpenAPI models are attached with :func:`body_operation`.

Scope and key are taken from the raw (still percent-encoded) path: the router sees ``a%2Fb`` as ``a/b`` and would
route it as scope ``a``, key ``b``; reading the raw path refuses that scope instead of writing somewhere else.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, cast
from urllib.parse import unquote_to_bytes

import msgspec
from litestar import Request, delete, get, patch, post, put
from litestar.connection import ASGIConnection
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Parameter, RequestBody, Schema
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.types import ASGIApp

from ripple import __version__
from ripple.auth.book import BAD_TOKEN
from ripple.auth.context import current_identity, require_admin
from ripple.auth.grants import ANONYMOUS
from ripple.core.events import (
    Delete,
    DeleteResult,
    Event,
    Groups,
    KindFilter,
    OpError,
    Page,
    SendResult,
    Set,
    SetResult,
    Update,
    UpdateResult,
)
from ripple.core.ops import UpdateOp
from ripple.core.validate import MAX_DEPTH, MAX_KEY_CHARS, validate_scope
from ripple.errors import (
    BadRequestError,
    InvalidOpError,
    InvalidValueError,
    NotFoundError,
    PreconditionFailedError,
    ProjectionRebuildingError,
    RippleError,
    StoreClosedError,
    UnauthorizedError,
    ValidationError,
)
from ripple.http.markers import PUBLIC
from ripple.limits import MAX_BATCH_BODY_BYTES
from ripple.migrations import LATEST_VERSION
from ripple.projections.runner import ProjectionList
from ripple.store.store import Store
from ripple.subscriptions.catchup import check_after
from ripple.subscriptions.params import check_query_names

T = TypeVar("T")

MAX_WAIT_SECONDS = 60.0
RECHECK_TOKEN_SECONDS = 1.0  # a long-poll wakes at least this often to see whether its token was revoked
MAX_IDEMPOTENCY_KEY_CHARS = 256
_encode = msgspec.json.Encoder().encode
STATE_PREFIX = b"/v1/state/"
STREAM_PREFIX = b"/v1/streams/"


# ---- wire models ---------------------------------------------------------------------------------------------


class PatchBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /v1/state/{scope}/{key}``: update ops in iii's form."""

    ops: list[UpdateOp]


class BatchBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/batch``: up to 1000 commands, applied all-or-nothing."""

    commands: list[Set | Update | Delete]


class SendBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/streams/{stream}/{group}``: one stream message."""

    type: str
    data: Any = None
    id: str | None = None


class CommandOutcome(msgspec.Struct, omit_defaults=True):
    """One batch result: a set, update or delete result (fields absent where that command has none)."""

    old_value: Any
    offset: int
    new_value: Any | msgspec.UnsetType = msgspec.UNSET
    version: int | msgspec.UnsetType = msgspec.UNSET
    errors: list[OpError] | msgspec.UnsetType = msgspec.UNSET


class BatchResults(msgspec.Struct):
    """One result per command, in order; ``null`` for the delete of a missing key."""

    results: list[CommandOutcome | None]


def outcome(result: SetResult | UpdateResult | DeleteResult | None) -> CommandOutcome | None:
    if result is None:
        return None
    if isinstance(result, DeleteResult):
        return CommandOutcome(result.old_value, result.offset)
    errors = result.errors if isinstance(result, UpdateResult) else msgspec.UNSET
    return CommandOutcome(result.old_value, result.offset, result.new_value, result.version, errors)


class EventsPage(msgspec.Struct):
    events: list[Event]
    next_after: int
    head: int


class ProjectionInfo(msgspec.Struct):
    name: str
    version: int
    checkpoint: int
    status: str
    data: Any = None


class RebuildStarted(msgspec.Struct):
    name: str
    status: str


class Health(msgspec.Struct):
    """``status`` is ``degraded`` when ``reasons`` is not empty: each reason starts with a code
    (``overloaded``, ``storage``, ``store_closed``, ``writer_stopped``, ``projection_failed``) and a colon."""

    status: Literal["ok", "degraded"]
    head: int
    earliest: int
    schema_version: int
    version: str
    counters: dict[str, int]
    reasons: list[str] = msgspec.field(default_factory=list)
    stream_earliest: int = 1  # stream events may be kept for less time than state events (ripple serve --retain-*)


class WhoAmI(msgspec.Struct):
    """``GET /v1/whoami``: whether the server requires tokens, and what the caller's token may do."""

    auth: bool
    name: str | None
    admin: bool
    scopes: list[str]
    streams: list[str]
    readable: list[str]  # the scopes holding keys that the caller may read (as GET /v1/scopes)


class ErrorInfo(msgspec.Struct):
    code: str
    message: str
    detail: Any = None


class ErrorBody(msgspec.Struct):
    """Every 4xx/5xx answer: ``{"error": {"code", "message", "detail"}}``."""

    error: ErrorInfo


# ---- OpenAPI helpers -----------------------------------------------------------------------------------------


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Replace ``$ref``s into ``defs`` by their targets (body models are not recursive)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return _inline(defs[ref.rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def json_schema(model: Any) -> dict[str, Any]:
    """The JSON Schema of a msgspec type with every definition inlined (OpenAPI 3.1 schema objects)."""
    (schema,), defs = msgspec.json.schema_components([model], ref_template="{name}")
    inlined: dict[str, Any] = _inline(schema, defs)
    return inlined


@dataclass
class PlainPathOperation(Operation):
    """Litestar documents a ``{name:path}`` parameter as ``format: uri``, but a key or stream group is any name
    (DESIGN §2), not a URI: clients generated from the document (and fuzzers) would refuse ordinary keys."""

    def __post_init__(self) -> None:
        for param in self.parameters or []:
            if isinstance(param, Parameter) and param.param_in == "path" and isinstance(param.schema, Schema):
                if param.schema.format is not None:
                    param.schema = Schema(type=OpenAPIType.STRING, min_length=1, max_length=MAX_KEY_CHARS)


def body_operation(model: Any, description: str) -> type[Operation]:
    """An Operation class documenting a JSON request body that the handler decodes itself."""
    schema = cast(Schema, json_schema(model))
    body = RequestBody(
        content={"application/json": OpenAPIMediaType(schema=schema)}, description=description, required=True
    )

    @dataclass
    class _WithBody(PlainPathOperation):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.request_body = body

    return _WithBody


_ERROR_TEXT = {
    304: "Not modified (If-None-Match matched)",
    400: "Malformed JSON, header or query value",
    404: "Not found",
    409: "Conflict (batch expected_offset, idempotency key reused)",
    412: "Precondition failed (If-Match / If-None-Match)",
    413: "Body over the limit",
    415: "Body is not application/json",
    422: "Well-formed but invalid",
    503: "Writer overloaded (Retry-After) or projection rebuilding",
    507: "Database full",
}


def errors(*statuses: int, **extra: ResponseSpec) -> dict[int, ResponseSpec]:
    """OpenAPI responses: the ripple error body for each status (Litestar would document its own shape)."""
    out = {
        s: ResponseSpec(data_container=ErrorBody, description=_ERROR_TEXT.get(s, "Error"), generate_examples=False)
        for s in statuses
    }
    for status, spec in extra.items():
        out[int(status.removeprefix("s"))] = spec
    return out


WRITE_ERRORS = (400, 404, 412, 413, 415, 422, 503, 507)


# ---- request parsing -----------------------------------------------------------------------------------------

_AT_PATH = re.compile(r"at `\$((?:\.\w+|\[\d+\]|\[\.\.\.\])*)`")
_INDEX = re.compile(r"^\.commands\[(\d+)\]")


_WANTED_HEADERS = frozenset({b"content-type", b"content-length", b"if-match", b"if-none-match", b"idempotency-key"})


def header(request: Request[Any, Any, Any], name: str) -> str | None:
    """One of the few headers ripple reads, from one pass over the raw headers (cheaper than ``request.headers``)."""
    scope = cast(dict[str, Any], request.scope)
    found: dict[bytes, bytes] | None = scope.get("ripple.headers")
    if found is None:
        found = scope["ripple.headers"] = {k: v for k, v in scope["headers"] if k in _WANTED_HEADERS}
    value = found.get(name.encode())
    return None if value is None else value.decode("latin-1")


def store_of(request: Request[Any, Any, Any]) -> Store:
    store: Store = request.app.state.store
    return store


def is_json_media_type(declared: str) -> bool:
    """Is a ``Content-Type`` value ``application/json`` or ``application/*+json`` (parameters ignored)?"""
    media = declared.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def check_json_content_type(request: Request[Any, Any, Any]) -> None:
    """415 unless the body is declared ``application/json`` or ``application/*+json``."""
    declared = header(request, "content-type") or ""
    if is_json_media_type(declared):
        return
    raise UnsupportedMediaTypeError(
        f"the body must be JSON: send Content-Type: application/json (got {declared or 'none'!r})",
        detail={"content_type": declared or None},
    )


class UnsupportedMediaTypeError(BadRequestError):
    code = "unsupported_media_type"
    status = 415


def _not_json(raw: bytes, exc: msgspec.DecodeError) -> BadRequestError:
    if not raw.strip():
        return BadRequestError("the body is empty")
    if _LONE_SURROGATE.search(raw):
        # msgspec calls it "Input data was truncated"; the escape names half of a UTF-16 pair, which is no character
        return BadRequestError("the body is not valid JSON: a \\uD800-\\uDFFF escape without its other half of the "
                               "surrogate pair is not a character")
    return BadRequestError(f"the body is not valid JSON: {exc}")


# a high surrogate escape not followed by a low one, or a low one not preceded by a high one
_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
                             rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def decode_body(raw: bytes, model: Any) -> Any:
    """Strict JSON decode: unparseable → 400, well-formed but the wrong shape → 422 naming the path; nested far
    beyond :data:`MAX_DEPTH` (deeper than the parser goes) → 400."""
    try:
        return _decode_body(raw, model)
    except RecursionError:
        raise BadRequestError(
            f"the body nests arrays and objects too deeply to parse (values may nest {MAX_DEPTH} levels)",
            detail={"max_depth": MAX_DEPTH},
        ) from None


def _decode_body(raw: bytes, model: Any) -> Any:
    """Strict JSON decode: unparseable → 400, well-formed but the wrong shape → 422 naming the path.

    msgspec validates while it parses, so ``[{`` against an object type fails on the ``[`` as the wrong shape before
    the parser reaches the syntax error. Decode first, validate second: a shape error is checked against an untyped
    parse, which costs nothing on the happy path (only bodies already refused are parsed twice).
    """
    try:
        value = msgspec.json.decode(raw, type=model)
    except msgspec.ValidationError as exc:
        try:
            msgspec.json.decode(raw)
        except msgspec.ValidationError:
            pass  # well-formed JSON that no Python value can hold (an integer beyond int64): a 422 like the rest
        except msgspec.DecodeError as syntax:
            raise _not_json(raw, syntax) from None
        message = str(exc)
        match = _AT_PATH.search(message)
        path = "$" + match.group(1) if match else "$"
        detail: dict[str, Any] = {"path": path}
        index = _INDEX.match(match.group(1)) if match else None
        if index:
            detail["index"] = int(index.group(1))
        error = InvalidValueError if model is Any else InvalidOpError if ".ops" in path else ValidationError
        raise error(f"invalid body: {message}", detail=detail) from None
    except msgspec.DecodeError as exc:
        raise _not_json(raw, exc) from None
    return value


class BodyTooLargeError(BadRequestError):
    code = "body_too_large"
    status = 413


async def read_body(request: Request[Any, Any, Any], limit: int | None = None) -> bytes:
    """The body, refused with 413 as soon as the announced or the received size passes ``limit`` (default: the
    route's)."""
    limit = limit or request.route_handler.resolve_request_max_body_size() or 1 << 62
    announced = header(request, "content-length")
    too_large = BodyTooLargeError(f"the request body is over the limit of {limit} bytes", detail={"limit": limit})
    if announced is not None:
        if not announced.isdigit():
            raise BadRequestError(f"malformed Content-Length header {announced!r}")
        if int(announced) > limit:
            raise too_large
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise BadRequestError("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json(request: Request[Any, Any, Any], model: type[T], limit: int | None = None) -> T:
    check_json_content_type(request)
    value: T = decode_body(await read_body(request, limit), model)
    return value


async def read_any_json(request: Request[Any, Any, Any]) -> Any:
    check_json_content_type(request)
    return decode_body(await read_body(request), Any)


def _unquote(raw: bytes, what: str) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError(f"the {what} in the path is not valid UTF-8 once percent-decoded") from None


def split_path(request: ASGIConnection[Any, Any, Any, Any], prefix: bytes) -> tuple[str, str | None]:
    """(first segment, rest or None) of the raw path after ``prefix``, each percent-decoded once."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    rest = raw[raw.index(prefix) + len(prefix) :] if prefix in raw else b""
    first_raw, slash, tail_raw = rest.partition(b"/")
    return _unquote(first_raw, "name"), (_unquote(tail_raw, "key") if slash and tail_raw else None)


def target(request: Request[Any, Any, Any]) -> tuple[str, str]:
    """(scope, key) of ``/v1/state/{scope}/{key…}``; a scope with ``/`` (even as ``%2F``) is refused (422)."""
    scope, key = split_path(request, STATE_PREFIX)
    validate_scope(scope)
    if key is None:
        raise NotFoundError("no key in the path", detail={"scope": scope})
    return scope, key


_ETAG = re.compile(r'^\s*(W/)?"(\d{1,19})"\s*$')


def _etags(header: str, name: str) -> list[tuple[bool, int]]:
    out = []
    for part in header.split(","):
        match = _ETAG.match(part)
        if match is None:
            raise BadRequestError(
                f'malformed {name} header {header!r}: expected "*" or entity tags like "42"',
                detail={"header": name, "value": header},
            )
        out.append((match.group(1) is not None, int(match.group(2))))
    return out


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    value = header(request, "idempotency-key")
    if value is None:
        return None
    # Header bytes arrive as latin-1: a UTF-8 "é" would pass isprintable() as "Ã©", so check for ASCII first.
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_CHARS or not (value.isascii() and value.isprintable()):
        raise BadRequestError(
            f"malformed Idempotency-Key header: expected 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters "
            "(space to ~, e.g. a UUID)",
            detail={"header": "Idempotency-Key"},
        )
    return value


async def expected_offset(request: Request[Any, Any, Any], store: Store, scope: str, key: str) -> int | None:
    """``If-Match: "N"`` → N; ``If-Match: *`` → the key's current offset (412 if missing); ``If-None-Match: *`` → 0."""
    if_match, if_none = header(request, "if-match"), header(request, "if-none-match")
    if if_match is not None and if_none is not None:
        raise BadRequestError("send If-Match or If-None-Match, not both")
    if if_none is not None:
        if if_none.strip() != "*":
            raise BadRequestError('on a write, If-None-Match takes only "*" (the key must not exist)')
        return 0
    if if_match is None:
        return None
    if if_match.strip() == "*":
        entry = await store.entry(scope, key)
        if entry is None:
            raise PreconditionFailedError(f"If-Match: * but {scope}/{key} does not exist")
        return entry.offset
    tags = _etags(if_match, "If-Match")
    if len(tags) != 1:
        raise BadRequestError("If-Match takes one entity tag")
    weak, offset = tags[0]
    if weak:
        raise PreconditionFailedError("a weak entity tag never matches If-Match (strong comparison)")
    if offset == 0:  # no ETag is ever "0" (offsets start at 1): If-Match needs an existing key, so it never matches
        raise PreconditionFailedError(f'If-Match: "0" never matches: {scope}/{key} must exist for If-Match')
    return offset


def not_modified(request: Request[Any, Any, Any], offset: int) -> bool:
    value = header(request, "if-none-match")
    if value is None:
        return False
    return value.strip() == "*" or any(tag == offset for _, tag in _etags(value, "If-None-Match"))


class JsonAnswer:
    """A JSON answer as a bare ASGI app: the hot paths skip Litestar's Response machinery (measured: ~10%)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, content: Any, status: int = 200, offset: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = b"" if status == 304 else _encode(content)
        self.headers = [(b"content-type", b"application/json")]
        if status != 304:
            self.headers.append((b"content-length", str(len(self.body)).encode()))
        if offset is not None:
            self.headers.append((b"etag", b'"%d"' % offset))
        for name, value in (headers or {}).items():
            self.headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def error_headers(exc: RippleError) -> dict[str, str] | None:
    """The headers an error answer carries: ``Retry-After`` (429, 503) and ``WWW-Authenticate`` (401)."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None and (isinstance(exc, StoreClosedError) or exc.code == "projection_rebuilding"):
        retry_after = 1
    if retry_after is not None:
        return {"Retry-After": str(retry_after)}
    if exc.status == 401:
        return {"WWW-Authenticate": 'Bearer realm="ripple"'}
    return None


def error_answer(exc: RippleError) -> JsonAnswer:
    """A ripple error as a bare ASGI answer (for code that runs outside Litestar's exception handlers)."""
    return JsonAnswer(ErrorBody(ErrorInfo(exc.code, exc.message, exc.detail)), exc.status, None, error_headers(exc))


def written(result: SetResult | UpdateResult) -> JsonAnswer:
    return JsonAnswer(result, 201 if result.version == 1 else 200, result.offset)


# ---- long-poll wake-up ---------------------------------------------------------------------------------------


class CommitSignal:
    """Wakes long-polling ``GET /v1/events?wait=`` requests after each commit (a writer listener; never polls)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()
        self.closed = False

    def __call__(self, _events: list[Event]) -> None:
        self.wake()

    def wake(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    def close(self) -> None:
        """Shutdown: answer every long-poll now."""
        self.closed = True
        self.wake()

    async def wait_beyond(self, store: Store, seen_head: int, seconds: float) -> None:
        """Return when the head moves past ``seen_head``, on close, or after ``seconds``."""
        if self.closed or store.head > seen_head or seconds <= 0:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await asyncio.wait_for(fut, seconds)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)


# ---- projections ---------------------------------------------------------------------------------------------


async def projection_info(store: Store, name: str) -> ProjectionInfo:
    """One projection with its data: 404 for an unknown name, 503 ``projection_rebuilding`` while it is rebuilt."""
    state = await store.projection(name)
    return msgspec.convert(state, ProjectionInfo, from_attributes=True)


# ---- handlers ------------------------------------------------------------------------------------------------

KEY_PATH = "/v1/state/{scope_name:str}/{key:path}"
TAGS = ["state"]


@get(
    KEY_PATH,
    tags=TAGS,
    operation_class=PlainPathOperation,
    responses=errors(304, 400, 404, 422, s200=ResponseSpec(Any, description="The value (any JSON), ETag header")),
    summary="Read a key's value",
)
async def get_value(request: Request[Any, Any, Any], at: FromQuery[int | None] = None) -> ASGIApp:
    """The raw JSON value with ``ETag: "<offset>"``; ``If-None-Match`` → 304; ``?at=N`` reads as of offset N."""
    only_query(request, "at")
    store = store_of(request)
    scope, key = target(request)
    entry = await store.entry(scope, key, at=at)
    if entry is None:
        raise NotFoundError(f"{scope}/{key} not found", detail={"scope": scope, "key": key, "at": at})
    return JsonAnswer(entry.value, 304 if not_modified(request, entry.offset) else 200, entry.offset)


@put(
    KEY_PATH,
    tags=TAGS,
    status_code=200,
    operation_class=body_operation(Any, "the new value: any JSON except null"),
    responses=errors(
        *WRITE_ERRORS,
        s200=ResponseSpec(SetResult, description="Updated"),
        s201=ResponseSpec(SetResult, description="Created"),
    ),
    summary="Set a key",
)
async def put_value(request: Request[Any, Any, Any]) -> ASGIApp:
    """Set a key to the body. ``If-Match: "N"`` / ``If-None-Match: *``; ``Idempotency-Key``. 201 created / 200."""
    store = store_of(request)
    scope, key = target(request)
    value = await read_any_json(request)
    expected = await expected_offset(request, store, scope, key)
    return written(
        await store.set(scope, key, value, expected_offset=expected, idempotency_key=idempotency_key(request))
    )


@patch(
    KEY_PATH,
    tags=TAGS,
    status_code=200,
    operation_class=body_operation(PatchBody, "update ops (iii form)"),
    responses=errors(
        *WRITE_ERRORS,
        s200=ResponseSpec(UpdateResult, description="Updated"),
        s201=ResponseSpec(UpdateResult, description="Created"),
    ),
    summary="Update a key with ops",
)
async def patch_value(request: Request[Any, Any, Any]) -> ASGIApp:
    """Apply update ops; failing ops are reported in ``errors``; all ops failing → 422, nothing written."""
    store = store_of(request)
    scope, key = target(request)
    body: PatchBody = await read_json(request, PatchBody)
    expected = await expected_offset(request, store, scope, key)
    return written(
        await store.update(scope, key, body.ops, expected_offset=expected, idempotency_key=idempotency_key(request))
    )


@delete(
    KEY_PATH,
    tags=TAGS,
    status_code=200,
    operation_class=PlainPathOperation,
    responses=errors(400, 404, 412, 422, 503, 507),
    summary="Delete a key",
)
async def delete_value(request: Request[Any, Any, Any]) -> DeleteResult:
    """Delete a key: ``{old_value, offset}``; 404 (and nothing appended) when it is missing."""
    store = store_of(request)
    scope, key = target(request)
    expected = await expected_offset(request, store, scope, key)
    result = await store.delete(scope, key, expected_offset=expected, idempotency_key=idempotency_key(request))
    if result is None:
        raise NotFoundError(f"{scope}/{key} not found", detail={"scope": scope, "key": key})
    return result


@get("/v1/state/{scope_name:str}", tags=TAGS, responses=errors(400, 422), summary="List a scope")
async def list_scope(
    request: Request[Any, Any, Any],
    limit: FromQuery[int] = 100,
    cursor: FromQuery[str | None] = None,
    at: FromQuery[int | None] = None,
) -> Page:
    """Entries in first-insertion order; pass ``next_cursor`` back as ``cursor``. Unknown scope → empty page."""
    only_query(request, "limit", "cursor", "at")
    scope, _ = split_path(request, STATE_PREFIX)
    return await store_of(request).list(scope, limit=limit, cursor=cursor, at=at)


@get("/v1/scopes", tags=TAGS, summary="List scopes")
async def list_scopes(request: Request[Any, Any, Any]) -> Groups:
    """Scopes that hold at least one key, sorted."""
    return await store_of(request).list_groups()


@post(
    "/v1/batch",
    tags=TAGS,
    status_code=200,
    request_max_body_size=MAX_BATCH_BODY_BYTES,
    operation_class=body_operation(BatchBody, "up to 1000 set/update/delete commands"),
    responses=errors(400, 409, 413, 415, 422, 503, 507),
    summary="Apply commands atomically",
)
async def post_batch(request: Request[Any, Any, Any]) -> BatchResults:
    """All-or-nothing, consecutive offsets, one result per command; the failing command's index is in detail."""
    limit = getattr(request.app.state, "max_batch_body_bytes", MAX_BATCH_BODY_BYTES)  # ripple serve --max-batch-*
    body: BatchBody = await read_json(request, BatchBody, limit)
    store = store_of(request)
    results = await store.batch(body.commands, idempotency_key=idempotency_key(request))
    return BatchResults([outcome(r) for r in results])


@post(
    "/v1/streams/{stream:str}/{group:path}",
    tags=["streams"],
    operation_class=body_operation(SendBody, "the message"),
    responses=errors(400, 413, 415, 422, 503, 507),
    summary="Send a stream message",
)
async def post_stream(request: Request[Any, Any, Any]) -> SendResult:
    """Append a stream message (logged, changes no state) → 201 ``{offset}``."""
    stream, group = split_path(request, STREAM_PREFIX)
    body: SendBody = await read_json(request, SendBody)
    return await store_of(request).send(stream, group or "", body.type, body.data, id=body.id)


@get("/v1/events", tags=["log"], responses=errors(400, 422), summary="Read the log")
async def get_events(
    request: Request[Any, Any, Any],
    after: FromQuery[int] = 0,
    limit: FromQuery[int] = 1000,
    scopes: Annotated[list[str] | None, QueryParameter(name="scope", description="repeatable")] = None,
    keys: Annotated[list[str] | None, QueryParameter(name="key", description="repeatable")] = None,
    kind: FromQuery[KindFilter] = "all",
    wait: FromQuery[float] = 0.0,
) -> EventsPage:
    """Events with offset > ``after``; ``wait=S`` long-polls up to S seconds for the first matching event.

    ``after`` beyond the head → 400 ``offset_out_of_range`` (a long-poll from there would skip what is written
    meanwhile)."""
    only_query(request, "after", "limit", "scope", "key", "kind", "wait")
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise ValidationError(f"wait must be 0-{MAX_WAIT_SECONDS:g} seconds, got {wait}", detail={"wait": wait})
    store, signal = store_of(request), request.app.state.commits
    if after >= 0:  # a negative one is a bad value (422 from read_events), not a position outside the log
        await check_after(store, after, kind)
    deadline = time.monotonic() + wait
    while True:
        head = store.head
        events = await store.read_events(after, limit, scopes=scopes, keys=keys, kind=kind)
        remaining = deadline - time.monotonic()
        if events or remaining <= 0 or signal.closed:
            return EventsPage(events, events[-1].offset if events else after, max(head, store.head))
        await signal.wait_beyond(store, head, min(remaining, RECHECK_TOKEN_SECONDS))
        check_token_still_valid(request)


def only_query(request: Request[Any, Any, Any], *allowed: str) -> None:
    """400 for a query parameter this route does not take (``token`` is allowed everywhere: browsers' WebSocket
    clients put it there, and HTTP ignores it)."""
    check_query_names(request.query_params.keys(), (*allowed, "token"))


def check_token_still_valid(request: Request[Any, Any, Any]) -> None:
    """A request that waits re-checks its token when it wakes: one revoked or expired meanwhile gets 401, as a
    WebSocket session of that token is closed (within about a second either way)."""
    identity = current_identity.get()
    book = getattr(request.app.state.access, "book", None)
    if identity is not None and book is not None and not book.is_current(identity):
        raise UnauthorizedError(BAD_TOKEN)


@get("/v1/projections", tags=["projections"], summary="List projections")
async def list_projections(request: Request[Any, Any, Any]) -> ProjectionList:
    """Every registered projection: ``{name, version, status, checkpoint, lag}`` (lag = head - checkpoint; ``error``
    when failed). Unlike reading one, listing never refuses a rebuilding projection: it shows its status."""
    require_admin("list projections")
    return await store_of(request).projections.summaries()


@get("/v1/projections/{name:str}", tags=["projections"], responses=errors(404, 503), summary="Read a projection")
async def get_projection(request: Request[Any, Any, Any], name: FromPath[str]) -> ProjectionInfo:
    """``{name, version, checkpoint, status, data}``; 503 ``projection_rebuilding`` while it is rebuilt."""
    return await projection_info(store_of(request), name)


@post(
    "/v1/projections/{name:str}/rebuild",
    tags=["projections"],
    status_code=202,
    responses=errors(404, 503),
    summary="Rebuild a projection",
)
async def post_rebuild(request: Request[Any, Any, Any], name: FromPath[str]) -> RebuildStarted:
    """Start rebuilding a projection from the log in the background → 202."""
    require_admin(f"rebuild projection {name!r}")
    store = store_of(request)
    try:
        await projection_info(store, name)
    except ProjectionRebuildingError:
        return RebuildStarted(name, "rebuilding")
    store.spawn(store.rebuild(name), name=f"ripple-rebuild-{name}")
    return RebuildStarted(name, "rebuilding")


@get("/v1/whoami", tags=["server"], summary="Who am I", opt={PUBLIC: True})
async def get_whoami(request: Request[Any, Any, Any]) -> WhoAmI:
    """The caller's token: its name and grants (``auth`` false: the server runs without tokens, everything is open).
    Without a token under ``--auth`` it answers as an identity that may read nothing."""
    identity = current_identity.get()
    readable = (await store_of(request).list_groups()).groups
    if identity is None:
        return WhoAmI(False, None, True, [], [], readable)
    return WhoAmI(True, identity.name if identity is not ANONYMOUS else None, identity.admin,
                  [str(g) for g in identity.scopes], [str(g) for g in identity.streams], readable)


@get("/v1/health", tags=["server"], summary="Health", opt={PUBLIC: True})
async def get_health(request: Request[Any, Any, Any]) -> Health:
    """``degraded`` with ``reasons`` while writes are refused (overloaded queue, storage error, shutting down) or a
    projection failed; ``counters`` holds the store's counters and, with ``--iii``, the iii engine's (``iii.*``).
    Under ``--auth`` it answers without a token, but the details (counters, what a reason is about) only to an admin
    token: others see the status and the reasons' codes."""
    store = store_of(request)
    reasons = store.degraded_reasons()
    if not store.closed:
        failed = [p for p in (await store.projections.summaries()).projections if p.status == "failed"]
        reasons += [f"projection_failed: projection {p.name} failed: {p.error}" for p in failed]
    identity = current_identity.get()
    counters: dict[str, int] = {}
    if identity is None or identity.admin:
        counters = {**store.counters, "queue_depth": store.queue_depth, "commits": store.commit_count}
        engine = getattr(request.app.state, "iii_engine", None)
        if engine is not None:
            counters["iii.workers"] = len(engine.workers)
            counters.update({f"iii.{name}": n for name, n in sorted(engine.counters.items())})
    else:
        reasons = [reason.partition(":")[0] for reason in reasons]
    floor = store.log_floor  # in memory: health never waits for a reader
    return Health(
        "degraded" if reasons else "ok", store.head, floor.earliest, LATEST_VERSION, __version__, counters,
        reasons, floor.stream_earliest,
    )


def rest_handlers() -> list[Any]:
    """Every REST route handler of DESIGN §8."""
    return [
        get_value,
        put_value,
        patch_value,
        delete_value,
        list_scope,
        list_scopes,
        post_batch,
        post_stream,
        get_events,
        list_projections,
        get_projection,
        post_rebuild,
        get_health,
        get_whoami,
    ]
