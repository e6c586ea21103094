"""The text of the context layout, rendered with the model's own chat template (pure).

    [sinks | pinned: system prompt, core memory, running summary, repo digest
           | recalled snippets for this turn | rolling window of messages]

The pinned region is one system message. Everything after it is appended message by message:
each new message is decoded as the *increment* between the template's rendering before and
after it, so the cache is never re-prefilled on a turn (ChatML is prefix-stable: rendering
[a, b] starts with the rendering of [a]). Templates that are not (the plain transcript used
for base models re-spaces the reply) take the `continuation` fallback, which skips the
reply's text inside the new rendering instead of comparing prefixes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from localctx.engine.base import ChatMessage

FormatChat = Callable[..., str]  # engine.format_chat(messages, add_generation_prompt=...)
_PLACEHOLDER: ChatMessage = {"role": "system", "content": "-"}
SUMMARY_HEADER = "Summary of the earlier conversation:"


def pinned_text(system: str, core: Sequence[str], summary: str, digest: str) -> str:
    """The pinned system message: stable parts first, so a summary update re-decodes least."""
    parts = [system.strip()]
    if core:
        parts.append("Core memory (facts the user asked you to remember):\n" + "\n".join(
            f"- {fact}" for fact in core
        ))  # fmt: skip
    if digest.strip():
        parts.append("Repository map:\n" + digest.strip())
    if summary.strip():
        parts.append(f"{SUMMARY_HEADER}\n{summary.strip()}")
    return "\n\n".join(p for p in parts if p)


def pinned_render(fmt: FormatChat, text: str) -> str:
    return fmt([{"role": "system", "content": text}], add_generation_prompt=False)


def render(fmt: FormatChat, messages: Sequence[ChatMessage], *, generation: bool) -> str:
    """The template's text for `messages` alone (after a system message, which is cut off)."""
    head = fmt([_PLACEHOLDER], add_generation_prompt=False)
    full = fmt([_PLACEHOLDER, *messages], add_generation_prompt=generation)
    return full[len(head) :] if full.startswith(head) else full


def decoded_text(fmt: FormatChat, messages: Sequence[ChatMessage], *, open_last: bool) -> str:
    """What the cache holds after `messages`. A generated reply is left open (no end marker):
    generation stops at the end-of-generation token without decoding it."""
    if open_last and messages and messages[-1]["role"] == "assistant":
        return render(fmt, messages[:-1], generation=True) + messages[-1]["content"]
    return render(fmt, messages, generation=False)


def continuation(
    fmt: FormatChat,
    last: ChatMessage | None,
    new: Sequence[ChatMessage],
    *,
    generation: bool,
    last_open: bool = False,
) -> str:
    """The text to decode after `last` (already in the cache; `last_open` when it is a reply
    the model generated) to append `new`."""
    before = [last] if last is not None else []
    held = decoded_text(fmt, before, open_last=last_open)
    target = render(fmt, [*before, *new], generation=generation)
    if target.startswith(held):
        return target[len(held) :]
    if last is not None and last_open and last["role"] == "assistant":
        opening = render(fmt, [], generation=True)
        body = last["content"].strip()
        at = target.find(body, len(opening) - 1) if body else -1
        if at >= 0:
            return target[at + len(body) :]
    # Last resort: the rendering of the new messages alone (never re-decodes what is held).
    return render(fmt, new, generation=generation)
