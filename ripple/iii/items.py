"""Stored stream items: ``stream::set/get/update/delete/list/list_groups/list_all`` (III-PROTOCOL §3.3).

An item lives in ripple's state under the scope of its group (:func:`ripple.core.names.item_scope`), so each change is
a logged ``created``/``updated``/``deleted`` event that the stream port, ``/v1/streams/{stream}/{group}`` and
``stream`` triggers deliver as iii's ``create``/``update``/``delete`` frames.

A worker that registered its own implementation (``createStream``/``create_stream``: ``stream::set(NAME)`` and the
other functions under that naming) owns that stream's storage: every call is forwarded to it, as the engine does. What
the worker reports for a write is then recorded in the same group scope, so subscribers and triggers see its changes
the same way; reads (``get``, ``list``, ``list_groups``) always ask the worker. Under ``--auth`` a forwarded call is
checked first by the rule the store applies to item scopes (:meth:`ripple.auth.grants.Identity.may_read`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ripple.auth.context import current_identity
from ripple.core.names import ITEMS_PREFIX, item_scope, items_prefix, parse_item_scope, unescape
from ripple.errors import ForbiddenError, InvalidOpError, RippleError, UpdateRejectedError
from ripple.iii.protocol import (
    IIIError,
    StreamGroupInput,
    StreamItemInput,
    StreamNameInput,
    StreamSetItemInput,
    StreamUpdateItemInput,
    deserialization_error,
    parse_input,
    update_reply,
)

if TYPE_CHECKING:
    from ripple.iii.engine import Builtin, Engine
    from ripple.store.store import Store

LIST_PAGE = 1000


async def read_items(store: Store, scope: str, at: int | None = None) -> list[Any]:
    """Every item of a group scope in first-insertion order (as of offset ``at``). Raises ``RippleError``."""
    values: list[Any] = []
    cursor: str | None = None
    while True:
        page = await store.list(scope, limit=LIST_PAGE, cursor=cursor, at=at)
        values.extend(entry.value for entry in page.items)
        if page.next_cursor is None:
            return values
        cursor = page.next_cursor


async def sync_data(store: Store, stream: str, group: str, item_id: str | None, at: int) -> Any:
    """What a join's ``sync`` frame carries: the group's items as of offset ``at``, or the one item (``null`` when
    missing). A name that cannot be a group scope holds no items."""
    try:
        scope = item_scope(stream, group)
    except ValueError:
        return None if item_id else []
    if item_id is not None:
        return await store.get(scope, item_id, at=at)
    return await read_items(store, scope, at)


class StreamItems:
    """The stream built-ins of one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store

    def builtins(self) -> dict[str, Builtin]:
        return {
            "stream::set": self.set,
            "stream::get": self.get,
            "stream::update": self.update,
            "stream::delete": self.delete,
            "stream::list": self.list_items,
            "stream::list_groups": self.list_groups,
            "stream::list_all": self.list_all,
        }

    # -- helpers

    def _custom(self, operation: str, code: str, stream: str, group: str | None, *, write: bool) -> str | None:
        """``stream::<operation>(<stream>)`` when a worker registered it (the engine's routing), else ``None``; a
        call forwarded there is first checked against the caller's grants (:meth:`_allow`)."""
        function_id = f"stream::{operation}({stream})"
        if self.engine.registry.owner(function_id) is None:
            return None
        self._allow(code, stream, group, write=write)
        return function_id

    @staticmethod
    def _scope(code: str, stream: str, group: str) -> str:
        try:
            return item_scope(stream, group)
        except ValueError as exc:
            raise IIIError(code, str(exc)) from None

    def _error(self, code: str, exc: RippleError) -> IIIError:
        return self.engine.store_error(code, exc)

    async def _forward(self, function_id: str, inp: msgspec.Struct) -> Any:
        return await self.engine.invoke(function_id, msgspec.to_builtins(inp))

    def _allow(self, code: str, stream: str, group: str | None, *, write: bool) -> None:
        """A worker-owned stream's calls never reach the store, so the store's grant rule is applied here first: the
        group's item scope (or, without a group, the stream itself)."""
        identity = current_identity.get()
        if identity is None:
            return
        try:
            try:
                scope = None if group is None else item_scope(stream, group)
            except ValueError:
                scope = None
            if scope is not None:
                (identity.require_write if write else identity.require_read)(scope)
            else:
                (identity.require_write_stream if write else identity.require_read_stream)(stream)
        except ForbiddenError as exc:
            raise self._error(code, exc) from None

    @staticmethod
    def _result_field(function_id: str, result: Any, field: str) -> Any:
        if not isinstance(result, dict) or field not in result:
            raise IIIError("JSON_ERROR", f"Failed to convert result to value: {function_id} returned no `{field}`")
        return result[field]

    # -- writes

    async def set(self, data: Any) -> Any:
        inp: StreamSetItemInput = parse_input("stream::set", data, StreamSetItemInput)
        scope = self._scope("STREAM_SET_ERROR", inp.stream_name, inp.group_id)
        custom = self._custom("set", "STREAM_SET_ERROR", inp.stream_name, inp.group_id, write=True)
        if custom is not None:
            result = await self._forward(custom, inp)
            new_value = self._result_field(custom, result, "new_value")
            await self._record(scope, inp.item_id, new_value)
            return result
        try:
            written = await self.store.set(scope, inp.item_id, inp.data)
        except RippleError as exc:
            raise self._error("STREAM_SET_ERROR", exc) from None
        return {"old_value": written.old_value, "new_value": written.new_value}

    async def update(self, data: Any) -> Any:
        inp: StreamUpdateItemInput = parse_input("stream::update", data, StreamUpdateItemInput)
        scope = self._scope("STREAM_UPDATE_ERROR", inp.stream_name, inp.group_id)
        custom = self._custom("update", "STREAM_UPDATE_ERROR", inp.stream_name, inp.group_id, write=True)
        if custom is not None:
            result = await self._forward(custom, inp)
            new_value = self._result_field(custom, result, "new_value")
            await self._record(scope, inp.item_id, new_value)
            return result
        try:
            written = await self.store.update(scope, inp.item_id, inp.ops)
        except InvalidOpError as exc:
            raise deserialization_error("stream::update", exc.message) from None
        except UpdateRejectedError as exc:  # every op failed: nothing written (DESIGN §4), as state::update
            old = await self._read(scope, inp.item_id, "STREAM_UPDATE_ERROR")
            return update_reply(old, old, exc.errors)
        except RippleError as exc:
            raise self._error("STREAM_UPDATE_ERROR", exc) from None
        return update_reply(written.old_value, written.new_value, [msgspec.to_builtins(e) for e in written.errors])

    async def delete(self, data: Any) -> Any:
        inp: StreamItemInput = parse_input("stream::delete", data, StreamItemInput)
        scope = self._scope("STREAM_DELETE_ERROR", inp.stream_name, inp.group_id)
        custom = self._custom("delete", "STREAM_DELETE_ERROR", inp.stream_name, inp.group_id, write=True)
        if custom is not None:
            result = await self._forward(custom, inp)
            await self._record(scope, inp.item_id, None)  # the worker deleted it: so does the record (if any)
            # The engine fails a custom delete that answers nothing; ripple reads it as "nothing was there".
            return result if isinstance(result, dict) else {"old_value": None}
        try:
            deleted = await self.store.delete(scope, inp.item_id)  # a missing item writes nothing
        except RippleError as exc:
            raise self._error("STREAM_DELETE_ERROR", exc) from None
        return {"old_value": None if deleted is None else deleted.old_value}

    async def _record(self, scope: str, item_id: str, new_value: Any) -> None:
        """Log a change a worker-owned stream reported (``None``: deleted), for subscribers and triggers."""
        try:
            if new_value is None:
                await self.store.delete(scope, item_id)
            else:
                await self.store.set(scope, item_id, new_value)
        except RippleError as exc:
            raise self._error("STREAM_SET_ERROR", exc) from None

    # -- reads

    async def _read(self, scope: str, item_id: str, code: str) -> Any:
        try:
            return await self.store.get(scope, item_id)
        except RippleError as exc:
            raise self._error(code, exc) from None

    async def get(self, data: Any) -> Any:
        inp: StreamItemInput = parse_input("stream::get", data, StreamItemInput)
        custom = self._custom("get", "STREAM_GET_ERROR", inp.stream_name, inp.group_id, write=False)
        if custom is not None:
            return await self._forward(custom, inp)
        scope = self._scope("STREAM_GET_ERROR", inp.stream_name, inp.group_id)
        value = await self._read(scope, inp.item_id, "STREAM_GET_ERROR")
        return msgspec.UNSET if value is None else value  # the engine omits `result` for a missing item

    async def list_items(self, data: Any) -> Any:
        inp: StreamGroupInput = parse_input("stream::list", data, StreamGroupInput)
        custom = self._custom("list", "STREAM_GET_GROUP_ERROR", inp.stream_name, inp.group_id, write=False)
        if custom is not None:
            return await self._forward(custom, inp)
        return await self.values(self._scope("STREAM_GET_GROUP_ERROR", inp.stream_name, inp.group_id))

    async def values(self, scope: str) -> list[Any]:
        try:
            return await read_items(self.store, scope)
        except RippleError as exc:
            raise self._error("STREAM_GET_GROUP_ERROR", exc) from None

    async def list_groups(self, data: Any) -> Any:
        inp: StreamNameInput = parse_input("stream::list_groups", data, StreamNameInput)
        custom = self._custom("list_groups", "STREAM_LIST_GROUPS_ERROR", inp.stream_name, None, write=False)
        if custom is not None:
            return await self._forward(custom, inp)
        prefix = items_prefix(inp.stream_name)
        try:
            scopes = (await self.store.list_groups()).groups
        except RippleError as exc:
            raise self._error("STREAM_LIST_GROUPS_ERROR", exc) from None
        return [unescape(s[len(prefix) :]) for s in scopes if s.startswith(prefix) and parse_item_scope(s)]

    async def list_all(self, data: Any) -> Any:
        try:
            scopes = (await self.store.list_groups()).groups
        except RippleError as exc:
            raise self._error("STREAM_LIST_ALL_ERROR", exc) from None
        streams: dict[str, list[str]] = {}
        for scope in scopes:
            found = parse_item_scope(scope) if scope.startswith(ITEMS_PREFIX) else None
            if found is not None:
                streams.setdefault(found[0], []).append(found[1])
        stream = [{"id": name, "groups": sorted(groups)} for name, groups in sorted(streams.items())]
        return {"stream": stream, "count": len(stream)}
