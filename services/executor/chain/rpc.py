"""JSON-RPC over web3.py's async HTTP provider: one call, or one batch, with typed failures.

Two kinds of failure, because the transaction manager treats them differently:
`RpcUnavailable` (no answer: connection refused, reset, timeout, a garbled reply) means the
node may or may not have acted on the request; `RpcError` is the node's own refusal, with the
JSON-RPC code, message and (for reverts) data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3


class RpcUnavailable(Exception):
    """The node did not answer; whatever was asked may or may not have happened."""


@dataclass(frozen=True)
class RpcError(Exception):
    """The node answered with a JSON-RPC error."""

    code: int
    message: str
    data: Any = None

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"


Request = tuple[str, Sequence[Any]]


class JsonRpc:
    """One node's JSON-RPC endpoint; `close()` it."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self._timeout = timeout_s
        self.web3 = AsyncWeb3(AsyncHTTPProvider(url, request_kwargs={"timeout": timeout_s}))

    async def call(self, method: str, *params: Any) -> Any:
        """The result of one request; `RpcError` or `RpcUnavailable` otherwise."""
        response = await self._send(lambda p: p.make_request(method, list(params)))
        return _result(response)

    async def batch(self, requests: Sequence[Request]) -> list[Any]:
        """One JSON-RPC batch: per request its result, or the `RpcError` it got (not raised)."""
        if not requests:
            return []
        batch = [(method, list(params)) for method, params in requests]
        responses = await self._send(lambda p: p.make_batch_request(batch))
        if not isinstance(responses, list):  # the node refused the batch as a whole
            _result(responses)
            raise RpcUnavailable(f"batch answered with {responses!r}")
        if len(responses) != len(batch):
            raise RpcUnavailable(f"{len(responses)} responses to a batch of {len(batch)}")
        results: list[Any] = []
        for response in responses:  # web3 orders them by id, i.e. as the requests
            try:
                results.append(_result(response))
            except RpcError as exc:
                results.append(exc)
        return results

    async def _send(self, request: Any) -> Any:
        provider = self.web3.provider
        try:
            async with asyncio.timeout(self._timeout):
                return await request(provider)
        except (OSError, TimeoutError, ValueError) as exc:
            raise RpcUnavailable(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # aiohttp's ClientError family and web3's wrappers of it
            if type(exc).__module__.startswith(("aiohttp", "web3")):
                raise RpcUnavailable(f"{type(exc).__name__}: {exc}") from None
            raise

    async def close(self) -> None:
        await self.web3.provider.disconnect()


def _result(response: Any) -> Any:
    if not isinstance(response, dict):
        raise RpcUnavailable(f"not a JSON-RPC response: {response!r}")
    error = response.get("error")
    if error is not None:
        if isinstance(error, dict):
            raise RpcError(
                int(error.get("code", 0)), str(error.get("message", "")), error.get("data")
            )
        raise RpcError(0, str(error))
    if "result" not in response:
        raise RpcUnavailable(f"a JSON-RPC response without a result: {response!r}")
    return response["result"]
