"""Checks on command-line values, before anything loads: one line and exit 9 for a bad one.

A number of the right type but out of range (`--threads 0`, `--max-tokens -1`), an empty value
(`--kv ""`, `--session ""`) and text that is not UTF-8 (a shell passes any bytes; Python turns
the undecodable ones into lone surrogates that SQLite then refuses mid-turn) are bad input;
a value Click cannot parse at all (`--threads many`) stays a usage error (exit 2). Must not
load a model or open a store: these run while Click parses.
"""

from __future__ import annotations

import math
from typing import Any

import click

from localctx.errors import BadInput, BadKvSetting
from localctx.runconfig import MAX_THREADS


class Bounded(click.ParamType[Any]):
    """A whole number in [lo, hi]; out of range is BadInput naming the flag and the range."""

    name = "integer"

    def __init__(self, lo: int, hi: int | None = None, *, meaning: str = "") -> None:
        self.lo, self.hi, self.meaning = lo, hi, meaning

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        extra = f" ({self.meaning})" if self.meaning else ""
        if number < self.lo:
            raise BadInput(f"{flag(param)} must be at least {self.lo}{extra}, got {number}")
        if self.hi is not None and number > self.hi:
            raise BadInput(f"{flag(param)} must be at most {self.hi}{extra}, got {number}")
        return number


class NonNegativeFloat(click.ParamType[Any]):
    name = "number"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number < 0:
            raise BadInput(f"{flag(param)} must be a finite number, 0 or more, got {value}")
        return number


def flag(param: click.Parameter | None) -> str:
    if param is None:
        return "a value"
    opts = getattr(param, "opts", None) or [param.name or "value"]
    return max(opts, key=len) if opts[0].startswith("-") else (param.name or "value").upper()


def utf8(value: str, what: str) -> str:
    """`value` if it is valid UTF-8 text, else BadInput saying where the bad byte is."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start].encode("utf-8", "surrogateescape")
        raise BadInput(
            f"{what} is not valid UTF-8 text (byte 0x{bad.hex()} at character {exc.start})"
        ) from None
    return value


def text_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A free-text option (--session, --model, --repo, --remote): not empty, valid UTF-8."""
    if value is None:
        return None
    if not value.strip():
        if param.name == "kv":
            raise BadKvSetting("--kv needs a cache type (f16, q8_0, q4_0, …), got an empty value")
        raise BadInput(f"{flag(param)} needs a value, got an empty one")
    return utf8(value, flag(param))


THREADS = Bounded(1, MAX_THREADS)  # llama.cpp crashed (exit 139) on --threads 100000
