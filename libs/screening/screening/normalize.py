"""Text as a screen should read it: what a model would see, and what is hidden in it.

- Unicode NFKC (full-width letters, ligatures and compatibility forms fold to plain ones);
- zero-width, bidi-control and variation-selector characters removed;
- Unicode tag characters (U+E0000–U+E007F: invisible, but models read them) decoded into the
  ASCII they smuggle, and kept as a view of their own;
- common confusables (Cyrillic and Greek look-alikes of Latin letters) folded;
- combining marks stacked on letters (zalgo) dropped;
- bounded decoding, for inspection only, of embedded base64, hex, rot13 and URL-encoding: each
  decoded text is a further view the rules and the classifier read.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field

MAX_VIEWS = 8  # decoded views per text
MAX_DECODE_CHARS = 4096  # of each encoded run that is decoded
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufe00-\ufe0f"
                        "\U000e0100-\U000e01ef\u00ad\u180e]")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_MARK = "\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff"
_COMBINING_RUN = re.compile(f"([^\\W\\d_])[{_MARK}]{{2,}}")  # stacked marks; one accent is a letter's
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])(?:[A-Za-z0-9+/]{4}){5,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :]?){8,}(?![0-9A-Fa-f])")
_URLENC = re.compile(r"(?:%[0-9A-Fa-f]{2}[^%\s]{0,3}){4,}")
_ROT13_CUE = re.compile(r"\brot-?13\b|\bcaesar\b|\bvgzr\b|\bvtaber\b", re.IGNORECASE)  # "time"/"ignore" in rot13

# Look-alikes of Latin letters that NFKC leaves alone (Cyrillic, Greek): the ones attacks use.
_CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ɡ": "g", "ո": "n", "ս": "u",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "ι": "i", "κ": "k", "χ": "x", "υ": "u",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
})


@dataclass(frozen=True)
class Normalized:
    text: str  # what the rules and the classifier read first
    views: tuple[tuple[str, str], ...] = field(default=())  # (how, decoded text) found inside it
    hidden: tuple[str, ...] = field(default=())  # what was hidden: "tags", "invisible", "confusables", "zalgo"

    def texts(self) -> list[str]:
        return [self.text, *(v for _, v in self.views)]


def normalize(text: str) -> Normalized:
    hidden: list[str] = []
    views: list[tuple[str, str]] = []
    smuggled = "".join(chr(ord(c) - 0xE0000) for run in _TAGS.findall(text) for c in run)
    if smuggled:
        hidden.append("tags")
        views.append(("tags", smuggled))
        text = _TAGS.sub(" ", text)
    decomposed = unicodedata.normalize("NFD", text)
    unstacked = _COMBINING_RUN.sub(r"\1", decomposed)
    if len(decomposed) - len(unstacked) >= 3:
        hidden.append("zalgo")
    folded = unicodedata.normalize("NFKC", unstacked)
    unzalgo = _INVISIBLE.sub("", folded)
    if unzalgo != folded:
        hidden.append("invisible")
    latin = unzalgo.translate(_CONFUSABLES)
    if latin != unzalgo and _mixed_scripts(unzalgo):
        hidden.append("confusables")
    else:
        latin = unzalgo  # a text in Cyrillic or Greek is not disguised Latin
    views += _decoded(latin)
    return Normalized(latin, tuple(views[:MAX_VIEWS]), tuple(hidden))


def _mixed_scripts(text: str) -> bool:
    """Latin letters and look-alikes in the same words: the mark of a disguise."""
    for word in re.findall(r"\w{3,}", text):
        has_latin = any("a" <= c.lower() <= "z" for c in word)
        if has_latin and any(c in _CONFUSABLE_CHARS for c in word):
            return True
    return False


_CONFUSABLE_CHARS = frozenset(chr(k) for k in _CONFUSABLES)


def _decoded(text: str) -> list[tuple[str, str]]:
    views: list[tuple[str, str]] = []
    for m in _BASE64.finditer(text):
        if (plain := _printable(_b64(m.group()[:MAX_DECODE_CHARS]))) is not None:
            views.append(("base64", plain))
        if len(views) >= MAX_VIEWS:
            return views
    for m in _HEX.finditer(text):
        digits = re.sub(r"[ :]", "", m.group())[:MAX_DECODE_CHARS]
        try:
            raw = binascii.unhexlify(digits[: len(digits) // 2 * 2])
        except (binascii.Error, ValueError):
            continue
        if (plain := _printable(raw)) is not None:
            views.append(("hex", plain))
    for m in _URLENC.finditer(text):
        plain = urllib.parse.unquote(m.group()[:MAX_DECODE_CHARS])
        if plain != m.group():
            views.append(("url", plain))
    if _ROT13_CUE.search(text):
        views.append(("rot13", codecs.decode(text[:MAX_DECODE_CHARS], "rot13")))
    return views[:MAX_VIEWS]


def _b64(chunk: str) -> bytes:
    try:
        return base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def _printable(raw: bytes) -> str | None:
    """Decoded bytes as text when they read like text (mostly printable, some letters)."""
    if len(raw) < 4:
        return None
    try:
        plain = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in plain)
    letters = sum(c.isalpha() for c in plain)
    return plain if printable >= 0.9 * len(plain) and letters >= 0.4 * len(plain) else None
