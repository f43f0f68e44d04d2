"""Interop check: the official OpenAI Agents SDK (Python) holds a conversation with the
realtime-agents simulator, tool call included.

Usage: python interop.py ws://127.0.0.1:PORT/v1/realtime

Exits 0 when every check passes, 1 with a message otherwise. Besides the SDK's own view
(session events, history), every raw server event is validated against the `openai`
package's GA server-event union (strict JSON mode) and checked for unknown fields; a second
phase drives the raw protocol (VAD, idle timeout, cancel, truncate, errors) and checks its
events the same way.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import sys
import time
from collections import Counter
from typing import Annotated, Any

import websockets
from pydantic import BaseModel, Field, TypeAdapter

from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner
from openai.types.realtime import RealtimeServerEvent

TIMEOUT_S = 60.0
TURN_TIMEOUT_S = 20.0

SERVER_EVENT = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])
# Read-only session fields the live API sends that the typed request model does not list.
ALLOWED_EXTRAS = {("session", "id"), ("session", "object"), ("session", "expires_at")}


class Failure(Exception):
    pass


@function_tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"Sunny, 22 degrees in {city}"


def extras(model: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Unknown fields anywhere in a validated pydantic model."""
    found: list[str] = []
    if isinstance(model, BaseModel):
        for key in (model.model_extra or {}):
            if (path[-1] if path else "", key) not in ALLOWED_EXTRAS:
                found.append(".".join(path + (key,)))
        for name in type(model).model_fields:
            found.extend(extras(getattr(model, name), path + (name,)))
    elif isinstance(model, (list, tuple)):
        for i, item in enumerate(model):
            found.extend(extras(item, path + (str(i),)))
    elif isinstance(model, dict):
        for key, item in model.items():
            found.extend(extras(item, path + (str(key),)))
    return found


class Observer:
    """Collects session events and signals turn ends."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.errors: list[str] = []
        self.raw: list[dict[str, Any]] = []
        self.conformance: list[str] = []
        self.history: list[Any] = []
        self.agent_ends = 0
        self.changed = asyncio.Event()

    def on_event(self, event: Any) -> None:
        self.events.append(event)
        if event.type == "error":
            self.errors.append(repr(event.error))
        elif event.type == "agent_end":
            self.agent_ends += 1
        elif event.type == "history_updated":
            self.history = list(event.history)
        elif event.type == "history_added":
            self.history.append(event.item)
        elif event.type == "raw_model_event" and event.data.type == "raw_server_event":
            data = event.data.data
            self.raw.append(data)
            try:
                parsed = SERVER_EVENT.validate_json(json.dumps(data), strict=True)
                unknown = extras(parsed)
                if unknown:
                    self.conformance.append(f"{data.get('type')}: unknown fields {unknown}")
            except Exception as e:  # pydantic.ValidationError
                self.conformance.append(f"{data.get('type')}: {e}")
        self.changed.set()

    async def wait_for(self, what: str, predicate) -> None:
        deadline = time.monotonic() + TURN_TIMEOUT_S
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failure(f"timed out waiting for {what}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def of_type(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]


def assistant_transcripts(history: list[Any]) -> list[str]:
    texts = []
    for item in history:
        if getattr(item, "type", None) == "message" and getattr(item, "role", None) == "assistant":
            for part in item.content:
                text = getattr(part, "transcript", None) or getattr(part, "text", None)
                if text:
                    texts.append(text)
    return texts


async def converse(url: str) -> None:
    agent = RealtimeAgent(
        name="Assistant",
        instructions="You are a helpful assistant. Use tools when useful.",
        tools=[get_weather],
    )
    runner = RealtimeRunner(agent)
    session = await runner.run(
        model_config={
            "url": url,
            "api_key": "sk-sim-test",
            "initial_model_settings": {"turn_detection": None},
        }
    )
    obs = Observer()
    async with session:
        async def pump() -> None:
            async for event in session:
                obs.on_event(event)

        pump_task = asyncio.create_task(pump())
        try:
            await obs.wait_for(
                "session.updated", lambda: any(r.get("type") == "session.updated" for r in obs.raw)
            )

            # Turn 1: a greeting.
            await session.send_message("Hello!")
            await obs.wait_for("the end of the greeting turn", lambda: obs.agent_ends >= 1)
            greeting = [r for r in obs.raw if r.get("type") == "response.output_audio_transcript.done"]
            print(f"turn 1: assistant said {greeting[-1]['transcript']!r}" if greeting else "turn 1: no transcript")

            # Turn 2: a tool call, then the spoken answer.
            ends_before = obs.agent_ends
            await session.send_message("What's the weather in Paris?")
            await obs.wait_for(
                "tool_end and the spoken answer",
                lambda: bool(obs.of_type("tool_end"))
                and obs.agent_ends >= ends_before + 2
                and any(
                    "Sunny" in t for t in assistant_transcripts(obs.history)
                ),
            )
        finally:
            pump_task.cancel()
            try:
                await pump_task
            except (asyncio.CancelledError, Exception):
                pass

    # Checks.
    counts = Counter(e.type for e in obs.events)
    raw_counts = Counter(r.get("type") for r in obs.raw)
    print("session events:", dict(counts))
    print("server events:", dict(raw_counts))
    problems: list[str] = []
    if obs.errors:
        problems.append(f"error events: {obs.errors}")
    if obs.conformance:
        problems.append("server events failing the openai types: " + "; ".join(obs.conformance[:5]))
    starts = [e for e in obs.of_type("tool_start") if e.tool.name == "get_weather"]
    ends = [e for e in obs.of_type("tool_end") if e.tool.name == "get_weather"]
    if not starts or "Paris" not in starts[0].arguments:
        problems.append(f"no tool_start for get_weather with Paris: {[e.arguments for e in starts]}")
    if not ends or "Paris" not in ends[0].arguments or "Sunny" not in str(ends[0].output):
        problems.append("no tool_end for get_weather(Paris) with its output")
    if counts["audio"] == 0:
        problems.append("no audio events")
    if counts["audio_end"] == 0:
        problems.append("no audio_end events")
    transcripts = assistant_transcripts(obs.history)
    final = transcripts[-1] if transcripts else ""
    print(f"turn 2: tool called with {starts[0].arguments if starts else None}; assistant said {final!r}")
    if "Sunny" not in final or "Paris" not in final:
        problems.append(f"final assistant transcript lacks 'Sunny' and 'Paris': {transcripts}")
    if problems:
        raise Failure("\n  ".join(problems))


def encode_text(text: str) -> bytes:
    """The simulator's test speech (`realtime_agents::simulator::speech::encode_text`), as
    PCM16 24 kHz little-endian bytes: one 30 ms tone per character, framed by start and end
    symbols; the simulator transcribes it back to `text`."""
    symbols = [95] + [ord(c) - 32 if " " <= c <= "~" else ord("?") - 32 for c in text] + [96]
    out = bytearray()
    for symbol in symbols:
        step = 2 * math.pi * (15 + symbol) * (1000 / 30) / 24000
        for n in range(720):
            out += int(round(10000 * math.cos(step * n))).to_bytes(2, "little", signed=True)
    return bytes(out)


async def speak(session: Any, text: str) -> None:
    """Streams test speech then 700 ms of silence in 20 ms chunks, like a microphone."""
    audio = encode_text(text) + bytes(2 * 24 * 700)
    for i in range(0, len(audio), 960):
        await session.send_audio(audio[i:i + 960])


async def voice_session(url: str) -> None:
    """Voice turns through server VAD: the SDK's default semantic VAD and transcription."""
    agent = RealtimeAgent(name="Voice", instructions="You are a helpful assistant.", tools=[get_weather])
    session = await RealtimeRunner(agent).run(model_config={"url": url, "api_key": "sk-sim-test"})
    obs = Observer()
    text = "What's the weather in Paris?"
    async with session:
        async def pump() -> None:
            async for event in session:
                obs.on_event(event)

        pump_task = asyncio.create_task(pump())
        try:
            await obs.wait_for(
                "session.updated", lambda: any(r.get("type") == "session.updated" for r in obs.raw)
            )
            await speak(session, text)
            await obs.wait_for(
                "the spoken answer to the voice question",
                lambda: bool(obs.of_type("tool_end"))
                and any("Sunny" in t for t in assistant_transcripts(obs.history)),
            )
            # Speaking again while the answer may still be "playing" on the SDK's wall clock:
            # the SDK interrupts and truncates the assistant item, then re-reads it.
            await speak(session, "Hello again")
            await obs.wait_for(
                "the answer to the second utterance",
                lambda: sum(1 for r in obs.raw if r.get("type") == "response.done") >= 3,
            )
            await asyncio.sleep(0.3)  # let a truncate/retrieve round trip land
        finally:
            pump_task.cancel()
            try:
                await pump_task
            except (asyncio.CancelledError, Exception):
                pass

    raw_counts = Counter(r.get("type") for r in obs.raw)
    print("voice session server events:", dict(raw_counts))
    problems: list[str] = []
    if obs.errors:
        problems.append(f"error events: {obs.errors}")
    if obs.conformance:
        problems.append("server events failing the openai types: " + "; ".join(obs.conformance[:5]))
    transcripts = [r["transcript"] for r in obs.raw
                   if r.get("type") == "conversation.item.input_audio_transcription.completed"]
    if transcripts[:1] != [text]:
        problems.append(f"user transcription {transcripts} != [{text!r}, ...]")
    starts = [e for e in obs.of_type("tool_start") if e.tool.name == "get_weather"]
    if not starts or "Paris" not in starts[0].arguments:
        problems.append("the voice question did not call get_weather(Paris)")
    if raw_counts["input_audio_buffer.speech_started"] < 2:
        problems.append("server VAD did not detect both utterances")
    truncated = raw_counts["conversation.item.truncated"]
    print(f"voice: transcripts {transcripts}; truncations after barge-in: {truncated}")
    if problems:
        raise Failure("\n  ".join(problems))


def check_event(data: dict[str, Any]) -> str | None:
    """A problem with one server event, if any."""
    try:
        parsed = SERVER_EVENT.validate_json(json.dumps(data), strict=True)
    except Exception as e:  # pydantic.ValidationError
        return f"{data.get('type')}: {e}"
    unknown = extras(parsed)
    return f"{data.get('type')}: unknown fields {unknown}" if unknown else None


async def conformance(url: str) -> None:
    """Drives the protocol directly (VAD, cancel, truncate, errors, idle timeout) and
    validates every server event against the openai types."""
    problems: list[str] = []
    seen: Counter[str] = Counter()
    headers = {"Authorization": "Bearer sk-sim-test"}
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:

        async def send(event: dict[str, Any]) -> None:
            await ws.send(json.dumps(event))

        async def until(kind: str) -> list[dict[str, Any]]:
            events = []
            while True:
                data = json.loads(await asyncio.wait_for(ws.recv(), TURN_TIMEOUT_S))
                seen[data["type"]] += 1
                problem = check_event(data)
                if problem:
                    problems.append(problem)
                events.append(data)
                if data["type"] == kind:
                    return events

        await until("session.created")
        tool = {"type": "function", "name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}
        await send({"type": "session.update", "session": {
            "type": "realtime", "tools": [tool], "instructions": "Be brief.",
            "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"},
                                "turn_detection": {"type": "server_vad", "idle_timeout_ms": 300}}}}})
        await until("session.updated")
        # A spoken turn through server VAD: 0.6 s of a 220 Hz tone, then silence.
        tone = [int(8000 * math.sin(2 * math.pi * 220 * n / 24000)) for n in range(14400)]
        pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in tone + [0] * 19200)
        for i in range(0, len(pcm), 4800):
            await send({"type": "input_audio_buffer.append",
                        "audio": base64.b64encode(pcm[i:i + 4800]).decode()})
        await until("conversation.item.input_audio_transcription.completed")
        done = (await until("response.done"))[-1]["response"]
        item_id = done["output"][0]["id"]
        # The idle timeout answers after a completed response.
        await until("input_audio_buffer.timeout_triggered")
        await until("response.done")
        # Text turn, tool call, tool output, cancel, truncate, retrieve, delete.
        await send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "Weather in Oslo?"}]}})
        await send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        call = (await until("response.done"))[-1]["response"]["output"][0]
        await send({"type": "conversation.item.create", "item": {"type": "function_call_output",
                    "call_id": call["call_id"], "output": json.dumps({"forecast": "snow"})}})
        await send({"type": "response.create", "response": {"conversation": "none",
                    "metadata": {"purpose": "check"}, "output_modalities": ["text"]}})
        await until("response.done")
        await send({"type": "conversation.item.truncate", "item_id": item_id,
                    "content_index": 0, "audio_end_ms": 300})
        await until("conversation.item.truncated")
        await send({"type": "conversation.item.retrieve", "item_id": item_id})
        await until("conversation.item.retrieved")
        await send({"type": "conversation.item.delete", "item_id": item_id})
        await until("conversation.item.deleted")
        await send({"type": "input_audio_buffer.clear"})
        await until("input_audio_buffer.cleared")
        await send({"type": "response.cancel", "event_id": "c1"})
        await ws.send("{oops")
        await send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        tail = await until("response.created")
        await send({"type": "response.create", "event_id": "dup"})
        await send({"type": "response.cancel"})
        tail += await until("response.done")
        errors = [e for e in tail if e["type"] == "error"]
        codes = [e["error"]["code"] for e in errors]
        # The first create may still be running when the duplicate arrives (it always is
        # unless the whole text response streamed before the duplicate was read).
        for code in ["response_cancel_not_active", "invalid_json"]:
            if code not in codes:
                problems.append(f"expected an error {code}, got {codes}")
    print("conformance: server event types seen:", len(seen), dict(seen))
    if problems:
        raise Failure("\n  ".join(problems[:8]))


async def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    started = time.monotonic()
    try:
        await asyncio.wait_for(converse(sys.argv[1]), TIMEOUT_S)
        await asyncio.wait_for(voice_session(sys.argv[1]), TIMEOUT_S)
        await asyncio.wait_for(conformance(sys.argv[1]), TIMEOUT_S)
    except Failure as e:
        print(f"INTEROP FAILED:\n  {e}")
        return 1
    except asyncio.TimeoutError:
        print(f"INTEROP FAILED: no result within {TIMEOUT_S:.0f} s")
        return 1
    print(f"INTEROP OK in {time.monotonic() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
