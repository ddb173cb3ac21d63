"""The `evm` backend: Akave's Storage contract over JSON-RPC (web3.py's async provider), signed
locally, with the transaction manager keeping many creates of each key in flight.

Where its settings come from in production: the Akave node's IPC `ConnectionParams` gives the
chain's RPC address and the Storage contract address (the SDK reads them the same way); the
chain id is asked from the node unless CHAIN_ID pins it. Locally, `make run` starts anvil with
our development contract (localinfra/chain.py) and sets them.

A view asks `getBucketByName(name, owner, 0, 0)` for the key that signs the name's creates
first, then every other key of the pool (one JSON-RPC batch), so a bucket is found after the
pool changed. `create_bucket(name, journal)` is the manager's create; `journal` is where the
job flow records each attempt before it is broadcast (without one, attempts are not kept).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Hashable, Sequence
from typing import TYPE_CHECKING

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address

from services.executor.backends.base import ChainBucket, CreatedBucket
from services.executor.chain import reverts
from services.executor.chain.fence import UNFENCED, Fence
from services.executor.chain.keys import SigningKey, key_for, keys_from_settings
from services.executor.chain.lane import LaneConfig
from services.executor.chain.manager import TransactionManager
from services.executor.chain.observer import UNOBSERVED, LaneObserver
from services.executor.chain.records import (
    AlreadyExists,
    Attempt,
    Created,
    Journal,
    LaneStatus,
    Outcome,
    Refused,
    Reverted,
)
from services.executor.chain.rpc import JsonRpc, RpcError, RpcUnavailable
from services.executor.errors import BackendError, revert_code
from shared import error_codes

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

GET_BUCKET_BY_NAME = reverts.selector("getBucketByName(string,address,uint256,uint256)")
BUCKET_TYPE = "(bytes32,string,uint256,address,bytes32[])"
ZERO_ID = bytes(32)
MIN_NAME_LENGTH = 3


class EvmConfigurationError(RuntimeError):
    """The evm backend cannot start: no key, no contract address, or no answer for the chain id."""


async def _unrecorded(attempt: Attempt) -> None:
    log.debug("attempt not recorded (no journal given)", extra={"tx_hash": attempt.tx_hash})


class EvmBackend:
    """`AkaveBackend` on an EVM chain; build it with `open(settings)`, then `close()` it."""

    def __init__(
        self, rpc: JsonRpc, manager: TransactionManager, contract: str, chain_id: int
    ) -> None:
        self._rpc = rpc
        self.manager = manager
        self.chain_id = chain_id
        self._contract = to_checksum_address(contract)
        self._closing: asyncio.Future[None] | None = None

    @classmethod
    async def open(
        cls, settings: Settings, fence: Fence = UNFENCED, observer: LaneObserver = UNOBSERVED
    ) -> EvmBackend:
        """`fence` is verified before every signing (one signer per key across processes);
        `observer` is told what the lanes do (the executor's chain metrics)."""
        try:
            keys = keys_from_settings(settings)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise EvmConfigurationError(f"cannot read the chain signing key(s): {reason}") from None
        if not settings.chain_contract_address:
            raise EvmConfigurationError("AKAVE_BACKEND=evm needs CHAIN_CONTRACT_ADDRESS")
        rpc = JsonRpc(settings.chain_rpc_url, timeout_s=settings.chain_rpc_timeout_s)
        try:
            chain_id = settings.chain_id or await _ask_chain_id(rpc)
        except BaseException:
            await rpc.close()
            raise
        config = LaneConfig(
            chain_id=chain_id,
            contract=settings.chain_contract_address,
            max_in_flight=settings.chain_max_in_flight,
            confirmations=settings.chain_confirmations,
            replace_after_blocks=settings.chain_replace_after_blocks,
            fee_bump=settings.chain_fee_bump,
            fee_cap_wei=int(settings.chain_max_fee_gwei * 10**9),
            insufficient_funds_wait_s=settings.chain_insufficient_funds_wait_s,
            create_gas=settings.chain_create_gas,
        )
        manager = TransactionManager(
            rpc, keys, config, settings.chain_poll_interval_s, fence, observer
        )
        await manager.start()
        return cls(rpc, manager, settings.chain_contract_address, chain_id)

    def __repr__(self) -> str:
        return f"EvmBackend(rpc={self._rpc.url!r}, contract={self._contract})"

    @property
    def signers(self) -> list[str]:
        return [key.address for key in self.manager.keys]

    def status(self) -> list[LaneStatus]:
        return self.manager.status()

    async def view_bucket(self, name: str) -> ChainBucket | None:
        if not name:
            raise BackendError(
                "empty bucket name", code=error_codes.INVALID_BUCKET_NAME, retryable=False
            )
        owners = _owners_for(name, self.manager.keys)
        calls = [
            ("eth_call", ({"to": self._contract, "data": _view_call(name, owner)}, "latest"))
            for owner in owners
        ]
        try:
            answers = await self._rpc.batch(calls)
        except RpcUnavailable as exc:
            raise BackendError(
                f"chain RPC unreachable: {exc}",
                code=error_codes.BACKEND_UNAVAILABLE,
                retryable=True,
            ) from None
        except RpcError as exc:
            raise BackendError(f"getBucketByName failed: {exc}") from None
        for answer in answers:
            if isinstance(answer, RpcError):
                raise BackendError(f"getBucketByName failed: {answer}")
            bucket_id, found_name, created_at, _owner, _files = decode(
                [BUCKET_TYPE], bytes.fromhex(answer[2:])
            )[0]
            if bucket_id != ZERO_ID:
                return ChainBucket(found_name or name, "0x" + bucket_id.hex(), created_at or None)
        return None

    async def create_bucket(
        self, name: str, journal: Journal = _unrecorded, job: Hashable | None = None
    ) -> CreatedBucket:
        if len(name) < MIN_NAME_LENGTH:  # the contract takes any name; Akave's SDK refuses these
            raise BackendError(
                f"invalid bucket name {name!r}: shorter than {MIN_NAME_LENGTH} characters",
                code=error_codes.INVALID_BUCKET_NAME,
                retryable=False,
            )
        return _created_or_raise(name, await self.manager.create(name, journal, job))

    async def resume_create(self, attempts: Sequence[Attempt], journal: Journal) -> CreatedBucket:
        """A create recorded before a restart, followed to its outcome (nothing new signed)."""
        return await self.follow_create(attempts, journal)

    def follow_create(
        self, attempts: Sequence[Attempt], journal: Journal
    ) -> Awaitable[CreatedBucket]:
        """`resume_create` in two halves: the attempts are tracked by their lane when this
        returns (raises if they cannot be), the awaitable is the create's result."""
        outcome = self.manager.follow(attempts, journal)
        name = attempts[0].bucket_name

        async def result() -> CreatedBucket:
            return _created_or_raise(name, await asyncio.shield(outcome))

        return result()

    async def close(self) -> None:
        """Stop the manager, then the RPC connection. Idempotent, and safe to call at once."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        await self.manager.close()
        await self._rpc.close()


def _owners_for(name: str, keys: list[SigningKey]) -> list[str]:
    first = key_for(name, keys).address
    return [first, *(key.address for key in keys if key.address != first)]


def _view_call(name: str, owner: str) -> str:
    return (
        GET_BUCKET_BY_NAME
        + encode(["string", "address", "uint256", "uint256"], [name, owner, 0, 0]).hex()
    )


def _created_or_raise(name: str, outcome: Outcome) -> CreatedBucket:
    if isinstance(outcome, Created):
        return CreatedBucket(
            tx_hash=outcome.tx_hash,
            name=name,
            bucket_id=outcome.bucket_id,
            block_number=outcome.block_number,
        )
    if isinstance(outcome, AlreadyExists):
        raise BackendError(
            f"createBucket reverted with BucketAlreadyExists ({reverts.BUCKET_ALREADY_EXISTS}) "
            f"in {outcome.tx_hash}",
            code=revert_code(outcome),
            retryable=True,
        )
    if isinstance(outcome, Reverted):
        raise BackendError(
            f"createBucket reverted with {outcome.error} in {outcome.tx_hash}",
            code=revert_code(outcome),
            retryable=False,
        )
    assert isinstance(outcome, Refused)
    raise BackendError(outcome.message, code=outcome.code, retryable=False)


async def _ask_chain_id(rpc: JsonRpc, tries: int = 10, delay_s: float = 1.0) -> int:
    for _ in range(tries):
        try:
            return int(await rpc.call("eth_chainId"), 16)
        except RpcUnavailable:
            await asyncio.sleep(delay_s)
    raise EvmConfigurationError(
        f"the chain at {rpc.url} does not answer eth_chainId (set CHAIN_ID)"
    )
