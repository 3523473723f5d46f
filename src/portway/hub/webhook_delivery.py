"""The webhook delivery worker: turns events into signed HTTP requests, durably and in order.

`Hub.start()` starts one `DeliveryWorker` in the hub's event loop; `Hub.stop()` stops it
before closing the store. Every pass it

1. fans new `events` rows out into deliveries (`store.deliveries.fan_out`, durable cursor),
2. leases the due head of each enabled webhook's queue and sends it, at most one request per
   webhook at a time, so webhook N+1 waits until N succeeded or failed for good,
3. records each attempt (status code, latency, error) and schedules the retry.

A pass follows the previous one after `poll_interval` while deliveries are under way, and
after `idle_poll_interval` when it found nothing to do: an idle hub reads the store twice every
two seconds, not every half second. Sooner when something is due: the hub sets the `wake` event when
the event log moved (its data plane follows the log anyway), an attempt ending wakes the loop
for the next delivery, and a retry this worker scheduled bounds the wait.

Everything it needs is in the store, so a restarted hub resumes where the last one stopped;
an attempt cut short by a stop is not counted and is sent again (delivery is at least once).
Times come from the injected clock; tests call `run_once()` after advancing a `FrozenClock`
and pass short retry delays through `DeliverySettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from portway import __version__
from portway.domain import webhook_rules as rules
from portway.domain.clock import Clock
from portway.hub import egress
from portway.store import Database, deliveries
from portway.store.deliveries import Attempt
from portway.store.event_feed import GAP_GRACE_SECONDS, EventTail
from portway.store.models import Webhook, WebhookDelivery

log = logging.getLogger("portway.hub.webhook_delivery")

USER_AGENT = f"portway-webhooks/{__version__}"
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class DeliverySettings:
    """How the worker sends; the defaults are the product's, tests shorten the waits."""

    policy: rules.RetryPolicy = field(default_factory=rules.RetryPolicy)
    timeout: float = 10.0
    poll_interval: float = 0.5  # between passes while deliveries are under way
    idle_poll_interval: float = 2.0  # after a pass that found nothing (see the module docstring)
    disable_after: timedelta = rules.DISABLE_AFTER
    lease: timedelta = timedelta(seconds=60)
    concurrency: int = 32
    gap_grace: float = GAP_GRACE_SECONDS
    resolve: egress.Resolver = egress.system_resolve


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        allow_private: bool,
        settings: DeliverySettings | None = None,
        wake: asyncio.Event | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.allow_private = allow_private
        self.settings = settings or DeliverySettings()
        # Names this worker's leases, so a stop can hand back exactly what it held.
        self.owner = uuid.uuid4().hex
        self._tail = EventTail(0, gap_grace=self.settings.gap_grace)
        self._inflight: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Set to run a pass now: by the hub when the event log moved (its data plane follows
        # the log anyway), and by an attempt that ended.
        self._wake = wake or asyncio.Event()
        self._retry_at: datetime | None = None  # the earliest retry this worker scheduled
        self._stopping = False
        # Attempts waiting on the network: the only ones a stop interrupts (never one that is
        # writing to the store, so no connection is cut mid-transaction).
        self._sending: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    # -- one pass ------------------------------------------------------------------------------

    async def fan_out(self) -> int:
        """Queue deliveries for new events; returns how many were queued."""
        async with self.db.session() as session:
            return await deliveries.fan_out(session, self._tail, now=self.clock.now())

    async def _claim_due(self) -> list[tuple[WebhookDelivery, Webhook]]:
        room = self.settings.concurrency - len(self._inflight)
        if room <= 0:
            return []
        now = self.clock.now()
        claimed = []
        async with self.db.session() as session:
            heads = await deliveries.due(
                session, now=now, limit=room, skip_webhooks=set(self._inflight)
            )
            for delivery, webhook in heads:
                if await deliveries.claim(
                    session, delivery.id, owner=self.owner, now=now, lease=self.settings.lease
                ):
                    claimed.append((delivery, webhook))
        return claimed

    async def run_once(self) -> int:
        """Fan out, then make every due attempt and wait for all of them; returns how many.

        For tests and tools; the running worker does the same on its own timer.
        """
        await self.fan_out()
        claimed = await self._claim_due()
        await asyncio.gather(*(self._attempt(d, w) for d, w in claimed))
        return len(claimed)

    # -- one attempt ---------------------------------------------------------------------------

    async def _attempt(self, delivery: WebhookDelivery, webhook: Webhook) -> None:
        if self._stopping:
            return  # its lease is handed back by `stop()`
        me = asyncio.current_task()
        assert me is not None
        self._sending.add(me)
        try:
            outcome = await self._send(delivery, webhook)
        finally:
            self._sending.discard(me)
        async with self.db.session() as session:
            settled = await deliveries.record(
                session, delivery.id, outcome, owner=self.owner, now=self.clock.now(),
                policy=self.settings.policy, disable_after=self.settings.disable_after,
            )  # fmt: skip
        if settled is not None and settled.next_attempt_at is not None:
            retry_at = settled.next_attempt_at
            self._retry_at = min(retry_at, self._retry_at or retry_at)
        if settled is not None and not outcome.ok:
            log.info(
                "webhook delivery failed",
                extra={
                    "webhook": str(webhook.id), "delivery": str(delivery.id),
                    "attempt": settled.attempts, "status": settled.status,
                    "error": outcome.error,
                },
            )  # fmt: skip
        self._wake.set()

    async def _send(self, delivery: WebhookDelivery, webhook: Webhook) -> Attempt:
        try:
            target = await egress.check(
                webhook.url, allow_private=self.allow_private, resolve=self.settings.resolve
            )
        except egress.ForbiddenAddress as exc:
            return Attempt(ok=False, status_code=None, latency_ms=None, error=f"refused: {exc}")
        except egress.EgressError as exc:
            return Attempt(ok=False, status_code=None, latency_ms=None, error=str(exc))
        body = rules.message_body(delivery.type, delivery.occurred_at, delivery.payload)
        timestamp = int(self.clock.now().timestamp())
        headers = rules.headers(webhook.secret, str(delivery.id), timestamp, body)
        headers |= {"content-type": "application/json", "user-agent": USER_AGENT}
        if target.host_header:
            headers["host"] = target.host_header
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
        timeout = self.settings.timeout
        started = time.perf_counter()

        def elapsed() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            async with asyncio.timeout(timeout):
                request = self._http().build_request(
                    "POST", target.url, content=body.encode(), headers=headers,
                    extensions=extensions,
                )  # fmt: skip
                # The answer's body is never read: only its status matters.
                response = await self._http().send(request, stream=True)
                await response.aclose()
        except TimeoutError:
            return Attempt(False, None, elapsed(), f"timed out after {timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt(False, None, elapsed(), f"{type(exc).__name__}: {exc}".rstrip(": "))
        status = response.status_code
        if 200 <= status < 300:
            return Attempt(True, status, elapsed(), None)
        return Attempt(False, status, elapsed(), f"answered HTTP {status}")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # No redirects (a 3xx could point into the private network) and no proxies from
            # the environment (the SSRF guard checks the address really connected to).
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                timeout=self.settings.timeout,
                limits=httpx.Limits(max_connections=self.settings.concurrency),
            )
        return self._client

    # -- lifecycle -----------------------------------------------------------------------------

    def _spawn(self, delivery: WebhookDelivery, webhook: Webhook) -> None:
        task = asyncio.create_task(self._attempt(delivery, webhook), name="portway-webhook")
        self._inflight[webhook.id] = task

        def done(finished: asyncio.Task[None]) -> None:
            self._inflight.pop(webhook.id, None)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("recording a webhook attempt failed", exc_info=finished.exception())
                self._wake.set()

        task.add_done_callback(done)

    async def _loop(self) -> None:
        while not self._stopping:
            busy = True  # after a failed pass, try again soon
            try:
                if self._retry_at is not None and self._retry_at <= self.clock.now():
                    self._retry_at = None  # due now: this pass claims it
                queued = await self.fan_out()
                claimed = await self._claim_due()
                for delivery, webhook in claimed:
                    self._spawn(delivery, webhook)
                # Attempts under way wake the loop when they end: they need no polling.
                busy = bool(queued or claimed)
            except Exception:
                # A store hiccup must not end deliveries for the life of the process.
                log.exception("webhook delivery pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._until_next_pass(busy))
            self._wake.clear()

    def _until_next_pass(self, busy: bool) -> float:
        if busy:
            return self.settings.poll_interval
        wait = self.settings.idle_poll_interval
        if self._retry_at is not None:
            wait = min(wait, max((self._retry_at - self.clock.now()).total_seconds(), 0.0))
        return wait

    def start(self) -> None:
        """Start the worker; called by `Hub.start()`, which calls `stop()` at shutdown."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="portway-webhooks")

    async def stop(self) -> None:
        """Stop sending: interrupt requests in flight and hand their deliveries back to the queue.

        The loop and any attempt busy with the store finish their step first (bounded).
        """
        self._stopping = True
        self._wake.set()
        for task in list(self._sending):
            task.cancel()
        tasks = [t for t in (self._task, *self._inflight.values()) if t is not None]
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._inflight.clear()
        try:
            async with self.db.session() as session:
                await deliveries.release(session, owner=self.owner)
        except Exception:
            log.exception("releasing webhook leases failed; they lapse on their own")
        if self._client is not None:
            await self._client.aclose()
            self._client = None
