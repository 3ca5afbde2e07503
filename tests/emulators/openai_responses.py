"""The OpenAI emulator's ``POST /v1/responses``: a stateless Responses API, as vLLM (>= 0.11.1)
and Ollama serve it natively.

A request is checked the way the hosted API checks it (unknown parameters, ranges, item
shapes, a ``function_call_output`` with no ``function_call`` before it), then turned into the
chat-completions messages the emulator's "model" already answers (``openai_gen.plan_chat``),
which is what those servers do inside. Unknown parameters are ignored as those servers ignore
them, unless the emulator is ``responses_strict``. Being stateless, it refuses ``previous_response_id``
(no response is ever found), ``conversation`` and ``background``; ``store`` is accepted and
answered as ``false``. Models flagged ``reasoning`` give a reasoning item ("The user said: T")
when ``reasoning.effort`` asks for one: with a summary when ``reasoning.summary`` is set, with
``encrypted_content`` when ``include`` asks for it. Errors use OpenAI's envelope; a failure
after a stream started is a ``response.failed`` event.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.emulators.common import dumps, tokens, word_count
from tests.emulators.openai_gen import Completion, content_text, plan_chat

FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "max_tool_calls",
        "temperature",
        "top_p",
        "top_logprobs",
        "reasoning",
        "text",
        "stream",
        "stream_options",
        "store",
        "include",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "service_tier",
        "truncation",
        "previous_response_id",
        "conversation",
        "background",
        "prompt",
        "context_management",
    }
)
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
ROLES = ("user", "assistant", "system", "developer")


class Invalid(Exception):
    """A 400 in OpenAI's shape: ``message``, ``param``, ``code``."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check(body: dict[str, Any], reasons: bool, strict: bool = False) -> None:
    """Validate a Responses body for a model that ``reasons`` (or not). Unknown parameters are
    ignored, as vLLM and Ollama ignore them (Codex sends ``client_metadata``); ``strict``
    refuses them as the hosted API does."""
    for name in body:
        if strict and name not in FIELDS:
            raise Invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    if "input" not in body:
        raise Invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    if body.get("previous_response_id") is not None:
        rid = body["previous_response_id"]
        raise Invalid(
            f"Previous response with id '{rid}' not found.",
            "previous_response_id",
            "previous_response_not_found",
        )
    if body.get("conversation") is not None:
        raise Invalid("Conversations are not supported by this server: send the whole input.", "conversation")
    if body.get("background"):
        raise Invalid(
            "Background mode needs stored responses, which this server does not keep.", "background"
        )
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 16):
        raise Invalid(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
            f"but got {limit} instead.",
            "max_output_tokens",
            "integer_below_min_value",
        )
    for name, high in (("temperature", 2.0), ("top_p", 1.0)):
        value = body.get(name)
        if value is not None and (not _number(value) or not 0 <= value <= high):
            raise Invalid(f"Invalid '{name}': expected a number between 0 and {high:g}.", name)
    _check_reasoning(body.get("reasoning"), reasons)
    _check_text(body.get("text"))
    names = _check_tools(body.get("tools"), strict)
    _check_tool_choice(body.get("tool_choice"), names)
    include = body.get("include")
    if include is not None and not (isinstance(include, list) and all(isinstance(i, str) for i in include)):
        raise Invalid("Invalid type for 'include': expected an array of strings.", "include")
    _check_input(body["input"])


def _check_reasoning(reasoning: Any, reasons: bool) -> None:
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise Invalid("Invalid type for 'reasoning': expected an object.", "reasoning")
    effort = reasoning.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise Invalid(
            f"Invalid value: '{effort}'. Supported values are: {', '.join(EFFORTS)}.", "reasoning.effort"
        )
    if effort not in (None, "none") and not reasons:
        raise Invalid(
            "Unsupported parameter: 'reasoning.effort' is not supported with this model.",
            "reasoning.effort",
            "unsupported_parameter",
        )


def _check_text(text: Any) -> None:
    fmt = (text or {}).get("format") if isinstance(text, dict) else None
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise Invalid("Invalid value for 'text.format.type'.", "text.format.type")
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str):
            raise Invalid(
                "Missing required parameter: 'text.format.name'.",
                "text.format.name",
                "missing_required_parameter",
            )
        if not isinstance(fmt.get("schema"), dict):
            raise Invalid(
                "Missing required parameter: 'text.format.schema'.",
                "text.format.schema",
                "missing_required_parameter",
            )


def _check_tools(tools: Any, strict: bool) -> list[str]:
    """Function tools are checked; others (Codex sends ``namespace`` and ``web_search``) are
    never offered to the model, or refused when ``strict``."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Invalid("Invalid type for 'tools': expected an array.", "tools")
    names = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            if not strict and isinstance(tool, dict):
                continue
            raise Invalid(
                f"Tool type '{kind}' is not supported by this server; only 'function' tools are.",
                f"tools[{i}].type",
            )
        if not isinstance(tool.get("name"), str):
            raise Invalid(
                f"Missing required parameter: 'tools[{i}].name'.",
                f"tools[{i}].name",
                "missing_required_parameter",
            )
        names.append(tool["name"])
    return names


def _check_tool_choice(choice: Any, names: list[str]) -> None:
    if choice is None or choice in ("auto", "none", "required"):
        return
    if isinstance(choice, dict) and choice.get("type") == "function":
        if choice.get("name") not in names:
            raise Invalid(
                f"Tool choice '{choice.get('name')}' not found in 'tools' parameter.", "tool_choice"
            )
        return
    raise Invalid("Invalid value for 'tool_choice'.", "tool_choice")


def _check_input(items: Any) -> None:
    if isinstance(items, str):
        return
    if not isinstance(items, list):
        raise Invalid("Invalid type for 'input': expected a string or an array of items.", "input")
    calls: set[str] = set()
    for i, item in enumerate(items):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        where = f"input[{i}]"
        if kind == "message":
            if item.get("role") not in ROLES:
                raise Invalid(
                    f"Invalid value: '{item.get('role')}'. Supported values are: {', '.join(ROLES)}.",
                    f"{where}.role",
                )
            content = item.get("content")
            if not isinstance(content, str | list):
                raise Invalid(f"Missing required parameter: '{where}.content'.", f"{where}.content")
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str):
                    raise Invalid(f"Missing required parameter: '{where}.{key}'.", f"{where}.{key}")
            calls.add(item["call_id"])
        elif kind == "function_call_output":
            if item.get("call_id") not in calls:
                raise Invalid(
                    f"No tool call found for function call output with call_id {item.get('call_id')}.",
                    f"{where}.call_id",
                )
        elif kind != "reasoning":
            raise Invalid(
                f"Invalid value: '{kind}'. This server takes message, function_call, "
                "function_call_output and reasoning items.",
                f"{where}.type",
            )


# ---------------------------------------------------------------------------- to chat


def _parts(content: Any) -> Any:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": part.get("image_url")}})
    return parts


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body a Responses request amounts to."""
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"]
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items:
        kind = item.get("type", "message")
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _parts(item["content"])})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else content_text(_parts(output or []))[0]
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if tools:
        chat["tools"] = [
            {"type": "function", "function": {"name": t["name"], "parameters": t.get("parameters")}}
            for t in tools
        ]
    choice = body.get("tool_choice")
    if choice == "none":
        chat.pop("tools", None)
    fmt = ((body.get("text") or {}).get("format") or {}).get("type")
    if fmt in ("json_object", "json_schema"):
        chat["response_format"] = {"type": fmt}
    if body.get("max_output_tokens"):
        chat["max_tokens"] = body["max_output_tokens"]
    return chat


def _last_user_text(chat: dict[str, Any]) -> str:
    for message in reversed(chat["messages"]):
        if message["role"] == "user":
            return content_text(message["content"])[0]
    return ""


# ---------------------------------------------------------------------------- answers


@dataclass
class Answer:
    result: Completion
    reasoning: list[str] | None  # None: no reasoning item
    summary: bool
    encrypted: bool

    @property
    def output_tokens(self) -> int:
        return self.result.completion_tokens + len(self.reasoning or [])


def plan(body: dict[str, Any], reasons: bool) -> Answer:
    chat = to_chat(body)
    result = plan_chat(chat)
    effort = (body.get("reasoning") or {}).get("effort")
    thinking = None
    if reasons and effort not in (None, "none"):
        thinking = tokens(f"The user said: {_last_user_text(chat)}")
    summary = bool((body.get("reasoning") or {}).get("summary"))
    encrypted = "reasoning.encrypted_content" in (body.get("include") or [])
    if result.prompt_tokens == 0:
        result.prompt_tokens = sum(word_count(str(m.get("content") or "")) for m in chat["messages"])
    return Answer(result, thinking, summary, encrypted)


class Renderer:
    """One answer as a Response object, or as its typed stream events (numbered in order)."""

    def __init__(self, body: dict[str, Any], answer: Answer, response_id: str) -> None:
        self.body, self.answer, self.id = body, answer, response_id
        self.created = int(time.time())
        self.seq = 0

    def _item_ids(self, kind: str, index: int) -> str:
        return f"{kind}_{self.id.removeprefix('resp_')}{index:02d}"

    def response(self, status: str, output: list[dict[str, Any]], error: Any = None) -> dict[str, Any]:
        body, result = self.body, self.answer.result
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        usage = None
        if status in ("completed", "incomplete"):
            out = self.answer.output_tokens
            usage = {
                "input_tokens": result.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": out,
                "output_tokens_details": {"reasoning_tokens": len(self.answer.reasoning or [])},
                "total_tokens": result.prompt_tokens + out,
            }
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"],
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {
                "effort": (body.get("reasoning") or {}).get("effort"),
                "summary": (body.get("reasoning") or {}).get("summary"),
            },
            "store": False,
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    @property
    def status(self) -> str:
        return "incomplete" if self.answer.result.finish_reason == "length" else "completed"

    def items(self) -> list[dict[str, Any]]:
        """The finished output items."""
        out: list[dict[str, Any]] = []
        answer = self.answer
        if answer.reasoning is not None:
            text = "".join(answer.reasoning)
            item: dict[str, Any] = {
                "type": "reasoning",
                "id": self._item_ids("rs", 0),
                "summary": [{"type": "summary_text", "text": text}] if answer.summary else [],
                "content": [{"type": "reasoning_text", "text": text}],
            }
            if answer.encrypted:
                item["encrypted_content"] = base64.b64encode(text.encode()).decode()
            out.append(item)
        if answer.result.content:
            out.append(
                {
                    "type": "message",
                    "id": self._item_ids("msg", len(out)),
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "text": "".join(answer.result.content),
                            "annotations": [],
                            "logprobs": [],
                        }
                    ],
                }
            )
        for call in answer.result.tool_calls:
            out.append(
                {
                    "type": "function_call",
                    "id": self._item_ids("fc", len(out)),
                    "call_id": call["id"],
                    "name": call["function"]["name"],
                    "arguments": call["function"]["arguments"],
                    "status": "completed",
                }
            )
        return out

    def whole(self) -> dict[str, Any]:
        return self.response(self.status, self.items())

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return f"event: {kind}\ndata: {dumps(data)}\n\n".encode()

    def failed(self, message: str) -> bytes:
        """The event that ends a stream cut by a fault. ``write_stream`` fires a fault instead of
        sending the event it just drew, so this one takes that event's number."""
        self.seq -= 1
        error = {"code": "server_error", "message": message}
        return self.event("response.failed", response=self.response("failed", [], error))

    def events(self) -> Iterator[bytes]:
        yield self.event("response.created", response=self.response("in_progress", []))
        yield self.event("response.in_progress", response=self.response("in_progress", []))
        done = self.items()
        for index, item in enumerate(done):
            yield from self._item_events(index, item)
        kind = "response.incomplete" if self.status == "incomplete" else "response.completed"
        yield self.event(kind, response=self.response(self.status, done))

    def _item_events(self, index: int, item: dict[str, Any]) -> Iterator[bytes]:
        kind, iid = item["type"], item["id"]
        where = {"item_id": iid, "output_index": index}
        if kind == "reasoning":
            yield self.event(
                "response.output_item.added", output_index=index, item=item | {"summary": [], "content": []}
            )
            yield from self._reasoning_events(item, where)
        elif kind == "message":
            text = item["content"][0]["text"]
            yield self.event(
                "response.output_item.added",
                output_index=index,
                item=item | {"status": "in_progress", "content": []},
            )
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield self.event("response.content_part.added", **where, content_index=0, part=empty)
            for piece in self.answer.result.content:
                yield self.event(
                    "response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]
                )
            yield self.event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            yield self.event("response.content_part.done", **where, content_index=0, part=item["content"][0])
        else:
            args = item["arguments"]
            yield self.event(
                "response.output_item.added",
                output_index=index,
                item=item | {"status": "in_progress", "arguments": ""},
            )
            for piece in [args[i : i + 7] for i in range(0, len(args), 7)]:
                yield self.event("response.function_call_arguments.delta", **where, delta=piece)
            yield self.event(
                "response.function_call_arguments.done", **where, name=item["name"], arguments=args
            )
        yield self.event("response.output_item.done", output_index=index, item=item)

    def _reasoning_events(self, item: dict[str, Any], where: dict[str, Any]) -> Iterator[bytes]:
        pieces = self.answer.reasoning or []
        text = "".join(pieces)
        if self.answer.summary:
            part = {"type": "summary_text", "text": ""}
            yield self.event("response.reasoning_summary_part.added", **where, summary_index=0, part=part)
            for piece in pieces:
                yield self.event(
                    "response.reasoning_summary_text.delta", **where, summary_index=0, delta=piece
                )
            yield self.event("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
            yield self.event(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=part | {"text": text}
            )
        for piece in pieces:
            yield self.event("response.reasoning_text.delta", **where, content_index=0, delta=piece)
        yield self.event("response.reasoning_text.done", **where, content_index=0, text=text)
