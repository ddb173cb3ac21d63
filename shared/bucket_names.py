"""The bucket name rules the gateway enforces before anything reaches the chain.

The SDK only rejects names under 3 characters. We add DNS-label-like rules so a name is safe
in a URL path, a Kafka key, a log line and a shell: lowercase ASCII letters, digits and
hyphens, 3 to 63 characters, starting and ending with a letter or a digit.
"""

from __future__ import annotations

import re

MIN_LENGTH = 3
MAX_LENGTH = 63
PATTERN = r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$"
_NAME = re.compile(PATTERN)


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid bucket name, or None when it is."""
    if len(name) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters long"
    if len(name) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters long"
    if not name.isascii():
        return "must contain only ASCII characters"
    if _NAME.fullmatch(name) is None:
        return (
            "may contain only lowercase letters, digits and hyphens, "
            "and must start and end with a letter or a digit"
        )
    return None
