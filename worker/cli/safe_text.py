"""Text from outside (Redis, files, the vendor) made safe to show on a terminal.

A campaign name, a vendor message or a raw stream entry is data, never
instructions to the terminal or to rich. Two things could go wrong:

* control characters: ESC starts sequences that clear the screen, move the
  cursor or draw OSC 8 hyperlinks; ``\\r`` and backspace overwrite what was
  printed; C1 controls (``\\x9b`` is a one-byte CSI on some terminals) and
  bidi overrides (U+202E) make text read differently than it is. Lone
  surrogates (bytes that were not UTF-8, kept by ``surrogateescape``) cannot
  even be encoded for a UTF-8 terminal and would end the command.
* rich markup: ``[/oops]`` raises ``MarkupError``, ``[link=...]`` draws a
  hyperlink, ``:smile:`` turns into an emoji.

:func:`visible` answers the first: every such character becomes a visible
escape (``\\x1b``, ``\\u202e``; a byte kept as a surrogate shows as the byte,
``\\xff``). :func:`safe_text` answers both: a rich ``Text`` is never parsed
for markup or emoji. Every value from outside goes through one of them, and
the views print only ``Text`` built from them.

Backslashes are kept as they are, so a Windows path or a regex in a message
reads naturally; a literal ``\\x1b`` typed by someone is harmless either way.
"""

from __future__ import annotations

import unicodedata

from rich.text import Text

# Control (Cc), format (Cf: bidi overrides, zero-width characters), surrogate
# (Cs) and the line and paragraph separators (Zl, Zp), which a terminal or a
# table would take as a line break.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# surrogateescape maps an undecodable byte 0x80-0xFF to U+DC80-U+DCFF.
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def _escape(char: str) -> str:
    if unicodedata.category(char) not in _HIDDEN_CATEGORIES:
        return char
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code in _ESCAPED_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(value: object) -> str:
    """``value`` as text with every control, format and surrogate character escaped."""
    text = value if isinstance(value, str) else str(value)
    # The common case costs one C-level scan: isprintable() is False for every
    # character escaped here (and for a few harmless spaces, kept below).
    if text.isprintable():
        return text
    return "".join(_escape(char) for char in text)


def safe_text(value: object, style: str = "", placeholder: str = "") -> Text:
    """``value`` as a rich ``Text`` for a table or a line: no markup, no controls.

    ``None`` and the empty string show as ``placeholder``.
    """
    if value is None or value == "":
        return Text(placeholder, style=style)
    return Text(visible(value), style=style)
