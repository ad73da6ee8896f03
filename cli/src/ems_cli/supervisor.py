"""Runs the child processes of ``ems up``: start in order, wait until ready, stop in reverse.

Children get their configuration through the environment (never on the command line, where
tokens would show in ``ps``), their output is forwarded line by line with a name prefix, and
each one is asked to die with its parent (PR_SET_PDEATHSIG) so a killed ``ems up`` leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ChildFailed(RuntimeError):
    """A child process exited, or never became ready."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    ready: Callable[[], Awaitable[bool]] | None = None
    stop_timeout: float = 10.0
    process: asyncio.subprocess.Process | None = field(default=None, init=False)
    _pump: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=dict(self.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            # Own session: a Ctrl-C in the terminal reaches only `ems up`, which then stops
            # the children in order (devices before the broker, the database last).
            start_new_session=True,
        )
        self._pump = asyncio.create_task(self._forward(), name=f"pump-{self.name}")
        log.info("started %s (pid %d)", self.name, self.process.pid)

    async def _forward(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        width = 10
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            sys.stdout.write(f"{self.name:<{width}}| {line}\n")
            sys.stdout.flush()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def wait_ready(self, limit: float) -> None:
        if self.ready is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise ChildFailed(f"{self.name} exited with code {code} before it was ready")
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                if await self.ready():
                    return
            await asyncio.sleep(0.2)
        raise ChildFailed(f"{self.name} was not ready within {limit:.0f} s")

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), self.stop_timeout)
            except TimeoutError:
                log.warning(
                    "%s did not stop within %.0f s; killing it", self.name, self.stop_timeout
                )
                self.process.kill()
                await self.process.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        log.info("stopped %s (exit code %s)", self.name, self.process.returncode)


async def tcp_ready(host: str, port: int) -> bool:
    """True once something accepts TCP connections on host:port."""
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_ready(host: str, port: int, path: str) -> bool:
    """True once GET path answers 200 (a tiny client: no dependency for one request)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 2.0)
        return status.split(b" ")[1:2] == [b"200"]
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class Supervisor:
    """Starts children in order and stops them in reverse; one dying stops them all."""

    def __init__(self, ready_timeout: float = 60.0) -> None:
        self.children: list[Child] = []
        self.ready_timeout = ready_timeout

    async def start(self, *children: Child) -> None:
        """Start children side by side (each retries its own connections), then wait until
        every one of them is ready."""
        for child in children:
            self.children.append(child)
            await child.start()
        await asyncio.gather(*(child.wait_ready(self.ready_timeout) for child in children))

    async def wait_any_exit(self) -> Child:
        """Block until one child exits; return it."""
        waits = {
            asyncio.create_task(c.process.wait(), name=f"wait-{c.name}"): c
            for c in self.children
            if c.process is not None
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[next(iter(done))]
        finally:
            for task in waits:
                task.cancel()

    async def stop_all(self) -> None:
        for child in reversed(self.children):
            await child.stop()
