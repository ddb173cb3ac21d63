"""Compile our development Storage contract with the pinned solcjs from npm.

    python -m localinfra.solc            # rewrite shared/storage_contract.json from Storage.sol
    python -m localinfra.solc --check    # fail (exit 1) when the committed artifact drifted

The artifact holds the ABI, the init bytecode, the compiler's exact version, the settings and
the source's sha256, so a test can rebuild it and compare. solcjs (the `solc` npm package,
WebAssembly, no native download) is installed once into `.local/solc/npm/`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from localinfra.npm import NpmError, ensure_package

SOLC_VERSION = "0.8.37"
CONTRACT = "Storage"
# paris: no PUSH0 or later opcodes, so the contract also deploys on chains behind the newest forks
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "paris",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}
REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "contracts" / "evm" / f"{CONTRACT}.sol"
ARTIFACT = REPO / "shared" / "storage_contract.json"  # package data: the executor reads it


class SolcError(RuntimeError):
    """solcjs could not be installed or did not compile the contract."""


def ensure_solc(root: Path = REPO) -> Path:
    """The pinned solcjs entry point (`solc.js`), installed from npm the first time."""
    try:
        return ensure_package(
            Path(root).resolve() / ".local" / "solc", "solc", SOLC_VERSION, "solc.js", _check
        )
    except NpmError as exc:
        raise SolcError(str(exc)) from exc


def build(source: Path = SOURCE, root: Path = REPO) -> dict[str, Any]:
    """The artifact for `source`, compiled now (nothing is written)."""
    solcjs = ensure_solc(root)
    text = source.read_text()
    request = {
        "language": "Solidity",
        "sources": {source.name: {"content": text}},
        "settings": SETTINGS,
    }
    answer = _node(solcjs, "--standard-json", stdin=json.dumps(request))
    # solcjs may print a ">>> ..." notice (no SMT solver) before the JSON answer
    output = json.loads(answer[answer.find("{") :])
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SolcError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    compiled = output["contracts"][source.name][CONTRACT]
    return {
        "contractName": CONTRACT,
        "source": f"contracts/evm/{source.name}",
        "sourceSha256": hashlib.sha256(text.encode()).hexdigest(),
        "compiler": f"solcjs {_node(solcjs, '--version').strip()}",
        "settings": SETTINGS,
        "abi": compiled["abi"],
        "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
    }


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localinfra.solc", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    try:
        fresh = render(build())
    except SolcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        current = ARTIFACT.read_text() if ARTIFACT.exists() else ""
        if current != fresh:
            print(f"{ARTIFACT} is out of date: run python -m localinfra.solc", file=sys.stderr)
            return 1
        return 0
    ARTIFACT.write_text(fresh)
    print(f"wrote {ARTIFACT}", file=sys.stderr)
    return 0


def _node(solcjs: Path, *args: str, stdin: str | None = None) -> str:
    node = shutil.which("node")
    if node is None:
        raise SolcError("node is not on PATH; install Node.js: apt-get install nodejs")
    result = subprocess.run(
        [node, str(solcjs), *args], input=stdin, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise SolcError(f"solcjs {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def _check(solcjs: Path) -> None:
    version = _node(solcjs, "--version")
    if not version.startswith(SOLC_VERSION + "+"):
        raise NpmError(f"npm installed solcjs {version.strip()!r}, expected {SOLC_VERSION}")


if __name__ == "__main__":
    raise SystemExit(main())
