"""The Wyoming TCP server: started by create_app's lifespan once the engines are loaded, in
the service's own process (the models are loaded once; gates, limits and metrics are the HTTP
API's own objects), stopped with it. Optional mDNS announcement (wyoming.zeroconf)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from contextlib import suppress

from wyoming.error import Error
from wyoming.event import async_write_event
from wyoming.zeroconf import HomeAssistantZeroconf

from app.settings import LOOPBACK_HOSTS
from app.state import ServiceState
from app.wyoming.handle import Histories
from app.wyoming.handler import Connection

log = logging.getLogger("voicefleet.wyoming")

# how long a closing connection waits for the client to close its side
_LINGER_S = 2.0
# what Home Assistant browses for (wyoming.zeroconf.HomeAssistantZeroconf announces it)
SERVICE_TYPE = "_wyoming._tcp.local."


class _Announcement(HomeAssistantZeroconf):
    """wyoming's Home Assistant zeroconf helper (`_wyoming._tcp.local.`), plus the goodbye
    on shutdown that it lacks (so Home Assistant does not keep a stale entry)."""

    async def close(self) -> None:
        await self._aiozc.async_unregister_all_services()
        await self._aiozc.async_close()


def _announced_host(host: str) -> str | None:
    """The IPv4 address to announce for a bind address (None: the helper finds the address
    of the interface that routes to the mDNS group)."""
    if host in LOOPBACK_HOSTS:
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a host name: announce the interface address
    if address.version == 4 and not address.is_unspecified:
        return host
    return None


class WyomingServer:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.settings = state.settings.wyoming
        self.histories = Histories(state)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._announcement: _Announcement | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def announced(self) -> bool:
        return self._announcement is not None

    @property
    def connections(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        s = self.settings
        self._server = await asyncio.start_server(
            self._client, host=s.host, port=s.port, limit=s.max_event_bytes
        )
        log.info("wyoming server on %s:%d", s.host, self.port)
        if s.zeroconf:
            await self._announce()

    async def _announce(self) -> None:
        s = self.settings
        name = s.zeroconf_name or f"voicefleet-{socket.gethostname()}"
        host = _announced_host(s.host)
        if host == "127.0.0.1":
            log.warning("wyoming.zeroconf announces %s on loopback: only this host sees it", name)
        try:
            announcement = _Announcement(port=self.port, name=name, host=host)
            await announcement.register_server()
        except Exception:
            # discovery is a convenience: Home Assistant can still add host:port by hand
            log.exception("wyoming: the mDNS announcement of %s failed", name)
            return
        self._announcement = announcement
        log.info("wyoming server announced over mDNS as %s (%s)", name, announcement.host)

    async def stop(self) -> None:
        if self._announcement is not None:
            with suppress(Exception):
                await self._announcement.close()
            self._announcement = None
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        metrics = self.state.metrics
        self._tasks.add(task)
        metrics.wyoming_connections.inc()
        try:
            limit = self.settings.max_connections
            if len(self._tasks) > limit:
                metrics.wyoming_errors.labels("connection", "too_many_connections").inc()
                refusal = Error(
                    text=f"the unit serves {limit} Wyoming connections at once; retry shortly",
                    code="too_many_connections",
                )
                with suppress(Exception):
                    await asyncio.wait_for(async_write_event(refusal.event(), writer), 2.0)
                return
            await Connection(self.state, self.histories, reader, writer).run()
        finally:
            self._tasks.discard(task)
            metrics.wyoming_connections.dec()
            await _close(reader, writer)


async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A clean close: end our side (FIN), then discard what the client still sends for a
    moment. Closing a socket with unread input sends a TCP reset instead, which may destroy
    the error event still in flight to a client that was streaming audio when refused."""
    with suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(_LINGER_S):
            while await reader.read(64 * 1024):
                pass
    writer.close()
    with suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), _LINGER_S)
