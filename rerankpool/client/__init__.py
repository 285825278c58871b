"""Python clients for a rerankpool broker: ``Client`` (blocking) and ``AsyncClient`` (asyncio)."""

from rerankpool.client._base import Hit, Ranking, Scores, Usage
from rerankpool.client.aio import AsyncClient
from rerankpool.client.sync import Client

__all__ = ["AsyncClient", "Client", "Hit", "Ranking", "Scores", "Usage"]
