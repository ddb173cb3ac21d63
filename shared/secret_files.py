"""Reading a secret from a file, refusing files that other accounts can read."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

from shared.errors import InsecureSecretFile as InsecureSecretFile


def read_secret_file(path: Path, setting: str) -> str:
    """The file's text, stripped; `InsecureSecretFile` if group or others have any access.

    A key that every account on the host (or every process in a shared container) can read
    is as good as published, so the services refuse it rather than warn.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecureSecretFile(
            errno.EACCES,
            f"{setting} names a file that its group or other users can access "
            f"(mode {mode:04o}); make it private with `chmod 600 {path}` (or 400)",
            str(path),
        )
    return path.read_text().strip()
