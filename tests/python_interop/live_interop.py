"""Live interop check: the official `openai` Python client (`client.live.connect()`) holds a
conversation with the simulator's Live mode, and every client event this crate's Live backend
sends validates against the package's `openai.types.live.ClientEvent`.

Usage: python live_interop.py ws://127.0.0.1:PORT/v1/live/sessions FRAMES.jsonl

FRAMES.jsonl: the client events the Rust backend sent in `tests/live_frames.rs` (one JSON
object a line). Exits 0 when every check passes, 1 with a message otherwise.

Checks:
* conversation: session.start/started, a spoken turn (the simulator's test speech) answered
  with speech and transcripts, a spoken request delegated to the client and answered with
  commentary, mute/unmute acknowledgements, an error for an unknown event, session.close →
  session.closed; every server event validates in strict JSON mode against
  `openai.types.live.ServerEvent`, with no field the type does not declare (but `event_id`
  on audio deltas, which the simulator adds);
* the Rust backend's client events: each validates in strict JSON mode against
  `openai.types.live.ClientEvent`, with no undeclared field.
"""

from __future__ import annotations

import asyncio
import base64
import math
import sys
import time
import typing
from collections import Counter
from typing import Annotated, Any

from openai import AsyncOpenAI
from openai.types.live import ClientEvent, ServerEvent
from pydantic import BaseModel, Field, TypeAdapter

TIMEOUT_S = 60.0
# The instructions line that names the tasks the application takes (the Rust backend writes it
# under client delegation; the simulator delegates requests that match a tool named there).
DELEGATE_LINE = "Delegate to the application, as one task, requests for:"

SERVER_EVENT = TypeAdapter(Annotated[typing.get_args(ServerEvent)[0], Field(discriminator="type")])
CLIENT_EVENT = TypeAdapter(Annotated[typing.get_args(ClientEvent)[0], Field(discriminator="type")])
# (event type, field) pairs the simulator sends beyond the declared types.
ALLOWED_SERVER_EXTRAS = {("session.output_audio.delta", "event_id")}


class Failure(Exception):
    pass


def extras(model: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Undeclared fields anywhere in a validated pydantic model."""
    found: list[str] = []
    if isinstance(model, BaseModel):
        for key in model.model_extra or {}:
            found.append(".".join(path + (key,)))
        for name in type(model).model_fields:
            found.extend(extras(getattr(model, name), path + (name,)))
    elif isinstance(model, (list, tuple)):
        for i, item in enumerate(model):
            found.extend(extras(item, path + (str(i),)))
    elif isinstance(model, dict):
        pass  # free-form objects (JSON schemas, nested Responses events)
    return found


def encode_text(text: str) -> bytes:
    """The simulator's test speech (`realtime_agents::simulator::speech::encode_text`) as
    PCM16 24 kHz little-endian bytes; the simulator transcribes it back to `text`."""
    symbols = [95] + [ord(c) - 32 if " " <= c <= "~" else ord("?") - 32 for c in text] + [96]
    out = bytearray()
    for symbol in symbols:
        step = 2 * math.pi * (15 + symbol) * (1000 / 30) / 24000
        for n in range(720):
            out += int(round(10000 * math.cos(step * n))).to_bytes(2, "little", signed=True)
    return bytes(out)


class Conversation:
    """Reads and validates server events; keeps what the checks need."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.seen: Counter[str] = Counter()
        self.problems: list[str] = []

    async def next(self) -> dict[str, Any]:
        raw = await self.connection.recv_bytes()
        try:
            event = SERVER_EVENT.validate_json(raw, strict=True)
        except Exception as e:  # noqa: BLE001 - report any validation failure
            raise Failure(f"server event does not validate: {raw[:300]!r}: {e}") from e
        kind = event.type
        self.seen[kind] += 1
        for extra in extras(event):
            if (kind, extra) not in ALLOWED_SERVER_EXTRAS:
                self.problems.append(f"{kind}: undeclared field {extra}")
        return event.model_dump(mode="json", exclude_unset=True)

    async def until(self, kind: str) -> list[dict[str, Any]]:
        events = []
        while True:
            event = await self.next()
            events.append(event)
            if event["type"] == kind:
                return events

    async def speak(self, text: str) -> None:
        audio = encode_text(text) + bytes(2 * 24 * 1000)
        for i in range(0, len(audio), 960):
            chunk = base64.b64encode(audio[i : i + 960]).decode()
            await self.connection.session.input_audio.append(audio=chunk)


def said(events: list[dict[str, Any]], kind: str) -> str:
    return "".join(e.get("delta", "") for e in events if e["type"] == kind)


async def converse(url: str) -> None:
    base = url.removesuffix("/live/sessions")
    client = AsyncOpenAI(api_key="sk-sim-test", websocket_base_url=base)
    async with client.live.connect() as connection:
        c = Conversation(connection)
        await connection.session.start(
            session={
                "model": "gpt-live-1",
                "instructions": f"You are helpful.\n\n{DELEGATE_LINE} get_weather",
                "audio": {"format": {"type": "audio/pcm", "rate": 24000}, "output": {"voice": "marin"}},
            }
        )
        started = (await c.until("session.started"))[-1]
        if started["session"]["status"] != "active":
            c.problems.append(f"session.started: {started}")

        await c.speak("hello there")
        events = await c.until("session.usage.updated")
        heard = said(events, "session.input_transcript.delta")
        answer = said(events, "session.output_transcript.delta")
        print(f"turn 1: heard {heard!r}, said {answer!r}")
        if heard != "hello there" or not answer.startswith("Hello!"):
            c.problems.append(f"turn 1: heard {heard!r}, said {answer!r}")
        if not any(e["type"] == "session.output_audio.delta" for e in events):
            c.problems.append("turn 1: no audio")

        await c.speak("What's the weather in Paris?")
        events = await c.until("session.delegation.created")
        delegation = events[-1]["delegation"]
        if delegation["target"] != "client":
            c.problems.append(f"delegation: {delegation}")
        await c.until("session.usage.updated")  # the acknowledgement
        await connection.session.commentary.append(
            content="Sunny, 22 degrees in Paris", delegation_id=delegation["id"]
        )
        events = await c.until("session.usage.updated")
        answer = said(events, "session.output_transcript.delta")
        print(f"turn 2: delegated {delegation['id']}, said {answer!r}")
        if answer != "Here is what I found: Sunny, 22 degrees in Paris.":
            c.problems.append(f"turn 2: said {answer!r}")
        if not any(e["type"] == "session.commentary.appended" for e in events):
            c.problems.append("turn 2: commentary not acknowledged")

        await connection.session.input_audio.mute()
        await c.until("session.input_audio.muted")
        await connection.session.input_audio.unmute()
        await c.until("session.input_audio.unmuted")
        await connection.send({"type": "session.thinking.append", "content": "x", "delegation_id": None, "event_id": "c1"})
        await c.until("session.thinking.appended")
        await connection.session.close()
        closed = (await c.until("session.closed"))[-1]
        if closed["reason"] != "close_requested":
            c.problems.append(f"session.closed: {closed}")
        print("conversation: server event types seen:", dict(c.seen))
        if c.problems:
            raise Failure("\n  ".join(c.problems[:8]))


def client_frames(path: str) -> None:
    kinds: Counter[str] = Counter()
    problems = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                event = CLIENT_EVENT.validate_json(line, strict=True)
            except Exception as e:  # noqa: BLE001 - report any validation failure
                problems.append(f"does not validate: {line[:300]}: {e}")
                continue
            kinds[event.type] += 1
            problems.extend(f"{event.type}: undeclared field {x}" for x in extras(event))
    print("rust backend: client event types validated:", dict(kinds))
    if len(kinds) < 10:
        problems.append(f"expected at least 10 kinds of client events, got {sorted(kinds)}")
    if problems:
        raise Failure("\n  ".join(problems[:8]))


async def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    started = time.monotonic()
    try:
        client_frames(sys.argv[2])
        await asyncio.wait_for(converse(sys.argv[1]), TIMEOUT_S)
    except Failure as e:
        print(f"LIVE INTEROP FAILED:\n  {e}")
        return 1
    except asyncio.TimeoutError:
        print(f"LIVE INTEROP FAILED: no result within {TIMEOUT_S:.0f} s")
        return 1
    print(f"LIVE INTEROP OK in {time.monotonic() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
