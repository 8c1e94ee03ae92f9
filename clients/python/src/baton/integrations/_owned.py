"""The Baton client an adapter works with: the one given to its constructor (left open), or its
own, made on first use (inside the running event loop) from ``target`` — default
``BATON_TARGET``, else ``localhost:50051`` — and the client options, and closed by ``close()``
or ``async with``."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, TypeVar

from baton import AsyncClient

_Self = TypeVar("_Self", bound="OwnsClient")


class OwnsClient:
    """Mixin of the adapters: call ``_hold_client`` from ``__init__``."""

    _client: Optional[AsyncClient]
    _owns_client: bool
    _target: str
    _client_kwargs: Dict[str, Any]

    def _hold_client(self, client: Optional[AsyncClient], target: Optional[str], client_kwargs: Dict[str, Any]) -> None:
        self._client = client
        self._owns_client = client is None
        self._target = target or os.environ.get("BATON_TARGET", "localhost:50051")
        self._client_kwargs = client_kwargs

    @property
    def client(self) -> AsyncClient:
        """The Baton client (made on first use when the adapter owns it)."""
        if self._client is None:
            self._client = AsyncClient(self._target, **self._client_kwargs)
        return self._client

    async def close(self) -> None:
        """Closes the adapter's own client (a later call makes a new one); a client given to
        the constructor is left open."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
