"""Strings an attacker (or an unlucky user) puts where ids go.

Each must be a plain literal wherever it lands: a wildcard of the filter
language, a LIKE wildcard, a quote, a backslash, a look-alike of another
user's id, SQL words, surrounding whitespace.
"""

from __future__ import annotations

LOOKALIKES = [
    "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth "alice"
    "\u0430lice",  # Cyrillic a + "lice"
    "alice\u200b",  # zero-width space after "alice"
    "ALICE",
]
ATTACK_IDS = [
    "*", "%", "_", "a%b_c", "o'brien", "x' OR '1'='1", "\\", "\\'", "x\\' OR 1=1) --",
    " * ", "NULL", "IS NOT NULL", "$or", "AND", "alice", *LOOKALIKES,
]
