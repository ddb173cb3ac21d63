"""Pinned tools from npm (anvil's binary, solcjs), each installed once into `.local/<tool>/npm`.

npm fills a scratch folder that replaces the install only when it is complete and checked (an
interrupted install never leaves half a package), under a lock for parallel test workers and
CI's first run on a fresh clone. A stamp with the package and version makes every later call
one file read; changing the pinned version reinstalls.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

NPM_TIMEOUT_S = 600


class NpmError(RuntimeError):
    """A pinned npm package could not be installed."""


def ensure_package(
    cache_dir: Path, package: str, version: str, entry: str, check: Callable[[Path], None]
) -> Path:
    """`cache_dir/npm/node_modules/<package>/<entry>`, installed first if it is missing.

    `check(path)` runs once on a new install and raises NpmError if it is not what we pinned.
    """
    target = cache_dir / "npm"
    stamp = cache_dir / "npm.stamp"
    wanted = f"{package}@{version}"
    path = target / "node_modules" / package / entry
    if _installed(stamp, wanted, path):
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / "npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(stamp, wanted, path):
            return path
        npm = shutil.which("npm")
        if npm is None:
            raise NpmError("npm is not on PATH; install Node.js and npm: apt-get install npm")
        scratch = cache_dir / "npm.partial"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        cmd = [npm, "install", "--prefix", str(scratch), "--no-save", "--no-audit", "--no-fund",
               "--loglevel=error", wanted]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        fresh = scratch / "node_modules" / package / entry
        if result.returncode != 0 or not fresh.is_file():
            output = (result.stdout + result.stderr)[-4000:]
            raise NpmError(f"installing {wanted} with npm failed:\n{output}")
        check(fresh)
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
        stamp.write_text(wanted)
    return path


def _installed(stamp: Path, wanted: str, path: Path) -> bool:
    try:
        return stamp.read_text().strip() == wanted and path.is_file()
    except OSError:
        return False
