"""The executor's port to the Akave chain, and the backends behind it."""

from __future__ import annotations

from services.executor.backends.base import AkaveBackend
from services.executor.chain.fence import UNFENCED, Fence
from services.executor.chain.observer import UNOBSERVED, LaneObserver
from shared.settings import Settings

__all__ = ["AkaveBackend", "open_backend"]  # AkaveBackend: the type open_backend returns


async def open_backend(
    settings: Settings, fence: Fence = UNFENCED, observer: LaneObserver = UNOBSERVED
) -> AkaveBackend:
    """The backend AKAVE_BACKEND names, ready to use; the caller must `close()` it. `fence`
    guards the evm backend's signing and `observer` sees its lanes (the other backends sign
    through their own nodes)."""
    if settings.akave_backend == "akave":
        from services.executor.backends.akave_sdk import AkaveSdkBackend

        return AkaveSdkBackend.from_settings(settings)
    from services.executor.backends.evm import EvmBackend

    return await EvmBackend.open(settings, fence, observer)
