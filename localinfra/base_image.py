"""The base image the gateway's image is built on, when no registry can be reached.

Users build `FROM python:3.11-slim` (the Dockerfile's default BASE_IMAGE). A machine without
a registry gets an equivalent built from Debian's packages: `debootstrap --variant=minbase`
of bookworm with Python 3.11 (`python3`, `python3-venv`) and the CA certificates, imported
as `akave-gateway-base:bookworm`. The Debian repository is the only thing it downloads.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from localinfra.engine import EngineError, _apt_install, client, client_env, docker, image_exists

USER_BASE = "python:3.11-slim"
DEBIAN_BASE = "akave-gateway-base:bookworm"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates", "netbase")


def ensure_base_image() -> str:
    """The base image to build on: python:3.11-slim when present or pullable, else ours."""
    if image_exists(USER_BASE) or _pulled(USER_BASE):
        return USER_BASE
    if not image_exists(DEBIAN_BASE):
        build_debian_base()
    return DEBIAN_BASE


def build_debian_base(tag: str = DEBIAN_BASE) -> float:
    """debootstrap + docker import; the seconds it took."""
    if shutil.which("debootstrap") is None:
        _apt_install("debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="akave-base-") as scratch:
        root = Path(scratch) / "rootfs"
        print(f"building {tag} from Debian {SUITE} (debootstrap) ...", flush=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             SUITE, str(root), MIRROR],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        # apt's downloaded packages and lists are not part of an image
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / cache).glob("*.deb" if "archives" in cache else "*_*"):
                entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [client(), "import",
             "--change", 'CMD ["python3"]', "-", tag],
            stdin=tar.stdout, capture_output=True, text=True, env=client_env(),
        )  # fmt: skip
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise EngineError(f"docker import of {tag} failed: {imported.stderr.strip()}")
    return time.monotonic() - started


def _pulled(image: str) -> bool:
    try:
        docker("pull", image, timeout=60)
    except (EngineError, subprocess.TimeoutExpired):
        return False
    return True
