"""The typed SSE events of a streamed ``/v1/responses`` answer, from the model's events.

``response.created`` and ``response.in_progress`` first; then each output item in turn: added,
its parts and deltas (``response.reasoning_summary_text.*`` / ``response.reasoning_text.*`` for
reasoning, ``response.content_part.*`` and ``response.output_text.*`` for the message,
``response.function_call_arguments.*`` for a call), done. Items do not interleave: a call whose
fragments arrive while another item is open is held and sent whole after it. The last event is
``response.completed`` (``response.incomplete`` when the limit cut the answer) after a
``Finish``, or ``response.failed`` after a ``Failure``. Every event has its ``sequence_number``.

The hot path is spliced, not built: the opening response object is serialised once for both
``response.created`` and ``response.in_progress``, and a text delta is one ``orjson.dumps`` of
its text between the bytes of its message item, prepared when the item opens.
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.conversation.answer import Delta, Event, Failure, Finish, ToolCallDelta, Usage
from corral.conversation.anthropic.streams import estimated
from corral.conversation.responses.answers import (
    call_item,
    message_item,
    new_id,
    output_text,
    reasoning_item,
    response,
    usage_dict,
    wants_summary,
)


class _Call:
    __slots__ = ("arguments", "call_id", "index", "item_id", "name")

    def __init__(self, fragment: ToolCallDelta) -> None:
        self.call_id = fragment.id or new_id("call")
        self.name = fragment.name
        self.arguments = ""
        self.item_id = new_id("fc")
        self.index: int | None = None  # its output index, once added


_TEXT_DELTA = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":'
)
_TEXT_TAIL = b',"logprobs":[]}\n\n'


class ResponsesWriter:
    """The model's events in, a Responses client's typed events out."""

    __slots__ = (
        "_base",
        "_body",
        "_calls",
        "_chars",
        "_items",
        "_model",
        "_open",
        "_pieces",
        "_reasoning",
        "_seq",
        "_summary",
        "_text",
        "_text_head",
        "done",
        "response_id",
    )

    def __init__(self, *, body: dict[str, Any], model: str, response_id: str) -> None:
        self._body = body
        self._model = model
        self.response_id = response_id
        self._summary = wants_summary(body)
        self._seq = 0
        self._items: list[dict[str, Any]] = []  # finished output items
        self._open: tuple[str, str] | None = None  # (kind, item id) of the open item
        self._reasoning = ""
        self._text: list[str] = []  # the open message's text, in pieces
        self._text_head: bytes | None = None  # a text delta's bytes after its sequence number
        self._calls: dict[int, _Call] = {}
        self._pieces = 0  # for usage the upstream did not give
        self._chars = 0
        self.done = False
        # the response object's fields that never change, built once
        self._base = response(body, response_id=response_id, model=model, status="in_progress", output=[])

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        out = {**self._base, "status": status, "output": list(self._items), "incomplete_details": incomplete}
        out.update(extra)
        return out

    def write(self, event: Event) -> bytes:
        head = self._text_head
        if head is not None and type(event) is Delta and not (event.reasoning or event.tool_calls):
            text = event.text  # the hot path: more text for the open message
            if text:
                self._pieces += 1
                self._chars += len(text)
                self._text.append(text)
                seq = self._seq
                self._seq = seq + 1
                return _TEXT_DELTA + str(seq).encode() + head + orjson.dumps(text) + _TEXT_TAIL
            return b""
        if self.done:
            return b""
        out = b""
        if self._seq == 0:
            opening = orjson.dumps(self._response("in_progress"))  # the same object twice
            out = (
                b'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":'
                + opening
                + b'}\n\nevent: response.in_progress\ndata: {"type":"response.in_progress",'
                b'"sequence_number":1,"response":' + opening + b"}\n\n"
            )
            self._seq = 2
        if isinstance(event, Delta):
            return out + self._delta(event)
        self.done = True
        self._text_head = None  # nothing more is written
        if isinstance(event, Failure):
            error = {"code": "server_error", "message": event.message}
            return out + self._event("response.failed", response=self._response("failed", error=error))
        out += self._close()
        for call in self._calls.values():
            if call.index is None:
                out += self._begin_call(call) + self._close()
        status = "incomplete" if event.reason == "length" else "completed"
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        return out + self._event(kind, response=self._response(status, usage=usage_dict(self._usage(event))))

    def _where(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open[1], "output_index": len(self._items)}

    def _usage(self, event: Finish) -> Usage:
        usage = event.usage
        if usage is None or (usage.completion_tokens == 0 and self._pieces):
            return estimated(self._pieces, self._chars, usage)
        return usage

    def _delta(self, event: Delta) -> bytes:
        out = b""
        if event.text or event.reasoning:
            self._pieces += 1
            self._chars += len(event.text) + len(event.reasoning)
        if event.reasoning:
            if self._open is None or self._open[0] != "reasoning":
                out += self._close() + self._begin("reasoning", new_id("rs"))
            self._reasoning += event.reasoning
            if self._summary:
                out += self._event(
                    "response.reasoning_summary_text.delta",
                    **self._where(),
                    summary_index=0,
                    delta=event.reasoning,
                )
            out += self._event(
                "response.reasoning_text.delta", **self._where(), content_index=0, delta=event.reasoning
            )
        if event.text:
            item = self._open
            if item is None or item[0] != "message":
                out += self._close() + self._begin("message", new_id("msg"))
                item = self._open
                assert item is not None
            self._text.append(event.text)
            seq = self._seq
            self._seq = seq + 1
            head = self._text_head or b""
            out += _TEXT_DELTA + str(seq).encode() + head + orjson.dumps(event.text) + _TEXT_TAIL
        for fragment in event.tool_calls or ():
            call = self._calls.get(fragment.index)
            if call is None:
                call = self._calls[fragment.index] = _Call(fragment)
                if self._open is None or self._open[0] != "call":
                    out += self._close() + self._begin_call(call)
            call.arguments += fragment.arguments
            if call.index is not None and self._open == ("call", call.item_id) and fragment.arguments:
                out += self._event(
                    "response.function_call_arguments.delta", **self._where(), delta=fragment.arguments
                )
        return out

    def _begin(self, kind: str, item_id: str) -> bytes:
        self._open = (kind, item_id)
        index = len(self._items)
        if kind == "reasoning":
            item = reasoning_item(item_id, "", False)
            out = self._event("response.output_item.added", output_index=index, item=item | {"content": []})
            if self._summary:
                part = {"type": "summary_text", "text": ""}
                out += self._event(
                    "response.reasoning_summary_part.added", **self._where(), summary_index=0, part=part
                )
            return out
        item = message_item(item_id, "", False, "in_progress") | {"content": []}
        out = self._event("response.output_item.added", output_index=index, item=item)
        self._text_head = (
            b',"item_id":' + orjson.dumps(item_id) + b',"output_index":' + str(index).encode()
            + b',"content_index":0,"delta":'
        )  # fmt: skip
        return out + self._event(
            "response.content_part.added", **self._where(), content_index=0, part=output_text("")
        )

    def _begin_call(self, call: _Call) -> bytes:
        out = self._close()
        self._open = ("call", call.item_id)
        call.index = len(self._items)
        item = call_item(call.item_id, call.call_id, call.name, "", "in_progress")
        out += self._event("response.output_item.added", output_index=call.index, item=item)
        if call.arguments:
            out += self._event(
                "response.function_call_arguments.delta", **self._where(), delta=call.arguments
            )
        return out

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        kind, item_id = self._open
        where = self._where()
        out = b""
        if kind == "reasoning":
            text, self._reasoning = self._reasoning, ""
            if self._summary:
                out += self._event(
                    "response.reasoning_summary_text.done", **where, summary_index=0, text=text
                )
                out += self._event(
                    "response.reasoning_summary_part.done",
                    **where,
                    summary_index=0,
                    part={"type": "summary_text", "text": text},
                )
            out += self._event("response.reasoning_text.done", **where, content_index=0, text=text)
            item = reasoning_item(item_id, text, self._summary)
        elif kind == "message":
            text, self._text, self._text_head = "".join(self._text), [], None
            out += self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            out += self._event("response.content_part.done", **where, content_index=0, part=output_text(text))
            item = message_item(item_id, text, False)
        else:
            call = next(c for c in self._calls.values() if c.item_id == item_id)
            out += self._event(
                "response.function_call_arguments.done", **where, name=call.name, arguments=call.arguments
            )
            item = call_item(item_id, call.call_id, call.name, call.arguments)
        out += self._event("response.output_item.done", output_index=where["output_index"], item=item)
        self._items.append(item)
        self._open = None
        return out
