"""How hard a shared secret is to guess: a small, explainable estimate that refuses made-up secrets at start-up.

The rule (docs/worker.md): a secret has at least 32 characters, only printable ASCII and no whitespace, at least
10 different characters, and an estimated 128 bits or more. The estimate reads the secret as the cheapest chain
of pieces, as an attacker who tries patterns before random strings would:

- one character: log2 of the alphabet the secret draws from (16 if it is all hex digits of one case, else the
  sum of the classes it uses: 26 lower, 26 upper, 10 digits, 32 symbols);
- a common word (settings/common_words.py; any case; 0/1/3/4/5/7/@/$ for letters): log2 of the list's size,
  plus a bit for capitals and a bit for swapped letters;
- a copy of earlier text, 3 characters or more (`zzzz`, `abab`, `passwordpassword`): log2(where it copies from)
  + log2(how long);
- a step pattern, 3 characters or more, that repeats earlier steps between characters (`abcdef`, `97531`,
  `a1b2c3`, `aabbcc`): the same cost.

The cheapest chain is found by dynamic programming, so a secret cannot hide a pattern by starting with noise.
The estimate cannot prove that a secret is random; it reliably catches the ones people make up.
"""

from __future__ import annotations

import itertools
import math
import string
from dataclasses import dataclass

from .common_words import WORDS

MIN_LENGTH = 32
MIN_BITS = 128
MIN_DISTINCT = 10
MIN_PATTERN = 3
# Only this many characters are examined (the cost is quadratic); more characters can only add strength.
EXAMINED = 256
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"

_WORDS = sorted(word for word in WORDS if len(word) >= MIN_PATTERN)
_WORD_BITS = math.log2(len(_WORDS))
_SWAPS = {"o": "0", "i": "1!", "l": "1", "e": "3", "a": "4@", "s": "5$", "t": "7"}
# Characters that may stand for each letter: itself, its capital and common digit-for-letter swaps.
_STANDS_FOR = {letter: letter + letter.upper() + _SWAPS.get(letter, "") for letter in string.ascii_lowercase}
# Words by each character that may begin them, so that each position tries only a few.
_STARTING_WITH: dict[str, list[str]] = {}
for _word in _WORDS:
    for _char in _STANDS_FOR[_word[0]]:
        _STARTING_WITH.setdefault(_char, []).append(_word)
_SYMBOLS = frozenset(string.punctuation)
_PATTERNS = {
    "word": "contains common words",
    "copy": "repeats earlier characters",
    "step": "follows a sequence",
}


@dataclass(frozen=True)
class Strength:
    """The estimate in bits, and the kinds of pattern the cheapest reading used ("word", "copy", "step")."""

    bits: float
    patterns: tuple[str, ...]


def weakness(secret: str | None, label: str) -> str | None:
    """One line saying why `label` (which names the setting) cannot be used, and how to fix it; None if strong.

    The line never contains the secret itself."""
    fix = f"generate one with: {GENERATE}"
    if not secret:
        return f"{label} is not set (or empty); {fix}"
    if any(c.isspace() for c in secret):
        return f"{label} contains spaces or other whitespace (a phrase, or a stray newline); {fix}"
    if not all(c in string.printable for c in secret):
        return f"{label} must be printable ASCII (letters, digits, punctuation); {fix}"
    if len(secret) < MIN_LENGTH:
        return f"{label} is too short ({len(secret)} characters, at least {MIN_LENGTH} needed); {fix}"
    distinct = len(set(secret))
    if distinct < MIN_DISTINCT:
        return f"{label} uses only {distinct} different characters (at least {MIN_DISTINCT} needed); {fix}"
    strength = estimate(secret)
    if strength.bits < MIN_BITS:
        why = ", ".join(f"it {_PATTERNS[pattern]}" for pattern in strength.patterns) or "too small an alphabet"
        bits = f"about {int(strength.bits)} bits estimated, {MIN_BITS} needed"
        return f"{label} is too easy to guess ({bits}: {why}); {fix}"
    return None


def estimate(secret: str) -> Strength:
    """The cheapest reading of the secret's first EXAMINED characters, in bits."""
    text = secret[:EXAMINED]
    size = len(text)
    per_character = math.log2(_alphabet(text))
    copies = _longest_copies(text)
    steps = _longest_copies([ord(b) - ord(a) for a, b in itertools.pairwise(text)])
    cost = [0.0] + [math.inf] * size
    came_from: list[tuple[int, str | None]] = [(0, None)] * (size + 1)

    def offer(start: int, end: int, bits: float, pattern: str | None) -> None:
        if cost[start] + bits < cost[end]:
            cost[end] = cost[start] + bits
            came_from[end] = (start, pattern)

    for start in range(size):
        offer(start, start + 1, per_character, None)
        for end, bits in _words_at(text, start):
            offer(start, end, bits, "word")
        for length in range(MIN_PATTERN, copies[start] + 1):
            offer(start, start + length, math.log2(start) + math.log2(length), "copy")
        # Characters from `start` on continue the steps from text[start - 1]: steps[start - 1] copies earlier steps.
        if start >= 1:
            for length in range(MIN_PATTERN, steps[start - 1] + 1):
                offer(start, start + length, math.log2(start) + math.log2(length), "step")
    used: list[str] = []
    end = size
    while end:
        end, pattern = came_from[end]
        if pattern and pattern not in used:
            used.append(pattern)
    return Strength(cost[size], tuple(sorted(used, key=list(_PATTERNS).index)))


def _alphabet(text: str) -> int:
    hex_digits = all(c in "0123456789abcdef" for c in text) or all(c in "0123456789ABCDEF" for c in text)
    if hex_digits and not text.isdigit():
        return 16
    classes = (
        (26, any(c in string.ascii_lowercase for c in text)),
        (26, any(c in string.ascii_uppercase for c in text)),
        (10, any(c in string.digits for c in text)),
        (len(_SYMBOLS), any(c in _SYMBOLS for c in text)),
    )
    return max(2, sum(count for count, present in classes if present))


def _words_at(text: str, start: int) -> list[tuple[int, float]]:
    found = []
    for word in _STARTING_WITH.get(text[start], ()):
        end = start + len(word)
        if end <= len(text) and all(c in _STANDS_FOR[w] for c, w in zip(text[start:end], word, strict=True)):
            piece = text[start:end]
            bits = _WORD_BITS + (piece != piece.lower()) + any(not c.isalpha() for c in piece)
            found.append((end, bits))
    return found


def _longest_copies(items: str | list[int]) -> list[int]:
    """For each position j, the longest run starting at j that equals a run starting earlier (the two may
    overlap, so `aaaa` copies itself from one back)."""
    size = len(items)
    longest = [0] * size
    below = [0] * (size + 1)  # common prefix lengths of runs at i + 1 and at each j
    for i in range(size - 1, -1, -1):
        row = [0] * (size + 1)
        for j in range(size - 1, i, -1):
            if items[i] == items[j]:
                row[j] = below[j + 1] + 1
                longest[j] = max(longest[j], row[j])
        below = row
    return longest
