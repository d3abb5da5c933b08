"""A small HTTP/1.1 load generator on asyncio streams, keep-alive, one connection per worker.

Hand-written rather than httpx because the generator shares two cores with the servers
it measures: it must cost as little CPU per request as possible, and the same client
measures the baseline and propdesk, so the ratio between them is fair. `run_load` runs it
in a process of its own (spawned), so its CPU never runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Literal, Protocol


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    tags: Counter[str] = field(default_factory=Counter)
    # (resource id from the response, wall-clock time the response arrived)
    responses: list[tuple[str, float]] = field(default_factory=list)
    errors: int = 0
    # Open loop only: requests still unanswered `grace` seconds after the last was due;
    # their latency is counted as the time they had waited by then (a lower bound).
    unfinished: int = 0
    elapsed: float = 0.0
    client_cpu_seconds: float = 0.0

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def throughput(self) -> float:
        """Successful (2xx) responses per second."""
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Workload(Protocol):
    def make(self, i: int) -> tuple[str, str, dict[str, str], bytes]: ...

    def tag(self, status: int, body: bytes) -> str: ...


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        reused = self.writer is not None
        try:
            status_line = await self._send(data)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            status_line = b""
        if not status_line and reused:
            # The server closed an idle keep-alive connection (uvicorn after 5 s) before
            # reading this request: send it again on a new one, as HTTP clients do.
            await self.close()
            status_line = await self._send(data)
        if not status_line:
            raise ConnectionError("server closed the connection")
        assert self.reader is not None
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    async def _send(self, data: bytes) -> bytes:
        """Write one request (connecting first if needed); the status line, or b"" if
        the server closed the connection instead of answering."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(data)
        return await self.reader.readline()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _record(result: Result, workload: Workload, status: int, body: bytes, ids: bool) -> None:
    result.statuses[status] = result.statuses.get(status, 0) + 1
    result.tags[workload.tag(status, body)] += 1
    # Only 201 Created names a new resource (intake answers a repeat with 200 and the
    # existing case, whose events happened before).
    if ids and status == 201:
        marker = body.find(b'"id":"')
        if marker >= 0:
            result.responses.append((body[marker + 6 : marker + 42].decode(), time.time()))


async def closed_loop(
    host: str,
    port: int,
    workload: Workload,
    *,
    connections: int,
    seconds: float,
    start_index: int = 0,
    collect_ids: bool = False,
) -> Result:
    """As fast as the server answers, `connections` requests in flight."""
    result = Result()
    deadline = time.perf_counter() + seconds
    counter = iter(range(start_index, 1 << 62))

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while time.perf_counter() < deadline:
                method, path, headers, body = workload.make(next(counter))
                t0 = time.perf_counter()
                try:
                    status, answer = await conn.request(method, path, headers, body)
                except (OSError, ConnectionError, asyncio.IncompleteReadError):
                    result.errors += 1
                    await conn.close()
                    continue
                result.latencies.append(time.perf_counter() - t0)
                _record(result, workload, status, answer, collect_ids)
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.elapsed = time.perf_counter() - start
    return result


async def open_loop(
    host: str,
    port: int,
    workload: Workload,
    *,
    rate: float,
    seconds: float,
    pool: int = 64,
    start_index: int = 0,
    collect_ids: bool = False,
    grace: float = 5.0,
    extra_ports: tuple[int, ...] = (),
) -> Result:
    """A fixed arrival rate (requests/s), latency measured from the scheduled send time,
    so a slow server cannot hide its queueing (no coordinated omission). A server that
    cannot keep up is given `grace` seconds after the last request was due, then the rest
    are abandoned and counted (so an overloaded run ends in bounded time). With
    `extra_ports` (replicas of the same service), requests go to `port` and them in turn,
    as a round-robin load balancer sends them; each has its share of the pool."""
    result = Result()
    ports = (port, *extra_ports)
    # Last in, first out: at a low rate the same few connections stay warm instead of
    # each of the pool idling past the server's keep-alive timeout.
    free: dict[int, asyncio.Queue[Connection]] = {p: asyncio.LifoQueue() for p in ports}
    for p in ports:
        for _ in range(max(1, pool // len(ports))):
            free[p].put_nowait(Connection(host, p))
    total = int(rate * seconds)

    async def one(i: int, scheduled: float) -> None:
        queue = free[ports[i % len(ports)]]
        conn = await queue.get()
        try:
            method, path, headers, body = workload.make(i)
            try:
                status, answer = await conn.request(method, path, headers, body)
            except (OSError, ConnectionError, asyncio.IncompleteReadError):
                result.errors += 1
                await conn.close()
                return
            result.latencies.append(time.perf_counter() - scheduled)
            _record(result, workload, status, answer, collect_ids)
        finally:
            queue.put_nowait(conn)

    start = time.perf_counter()
    tasks: list[tuple[float, asyncio.Task[None]]] = []
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append((scheduled, asyncio.create_task(one(start_index + n, scheduled))))
    _done, pending = await asyncio.wait([t for _, t in tasks], timeout=grace)
    if pending:
        now = time.perf_counter()
        for scheduled, task in tasks:
            if task in pending:
                task.cancel()
                result.unfinished += 1
                result.latencies.append(now - scheduled)
        await asyncio.gather(*pending, return_exceptions=True)
    result.elapsed = time.perf_counter() - start
    for queue in free.values():
        while not queue.empty():
            await queue.get_nowait().close()
    return result


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    mode: Literal["closed", "open"]
    seconds: float
    warmup: float = 5.0
    connections: int = 32
    rate: float = 200.0
    start_index: int = 0
    collect_ids: bool = False
    # Replicas of the server on other ports (open loop only): requests go round robin.
    extra_ports: tuple[int, ...] = ()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(spec: LoadSpec, workload: Workload) -> Result:
    async def phase(seconds: float, start_index: int, collect: bool) -> Result:
        if spec.mode == "closed":
            return await closed_loop(
                spec.host,
                spec.port,
                workload,
                connections=spec.connections,
                seconds=seconds,
                start_index=start_index,
                collect_ids=collect,
            )
        return await open_loop(
            spec.host,
            spec.port,
            workload,
            rate=spec.rate,
            seconds=seconds,
            start_index=start_index,
            collect_ids=collect,
            extra_ports=spec.extra_ports,
        )

    if spec.warmup > 0:
        await phase(spec.warmup, spec.start_index, False)
    cpu0 = _cpu_seconds()
    result = await phase(spec.seconds, spec.start_index + 10_000_000, spec.collect_ids)
    result.client_cpu_seconds = _cpu_seconds() - cpu0
    return result


def load_process_main(spec: LoadSpec, workload: Workload) -> Result:
    """Entry point inside the load process: warm-up (discarded), then the measured phase."""
    return asyncio.run(_run(spec, workload))


def load_pool() -> ProcessPoolExecutor:
    """One spawned worker: a fresh interpreter, no event loop or sockets inherited."""
    return ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))


async def run_load(pool: ProcessPoolExecutor, spec: LoadSpec, workload: Workload) -> Result:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, load_process_main, spec, workload)
