"""The beat service: sync the config, hold the lease, send each due run once.

Every ``beat_poll_interval`` seconds (sooner when a run is due) a beat:

1. takes or renews the lease (``hutch_beat_lease``); only the holder goes on
   past step 2, every other beat is a standby that sleeps until the lease it saw
   expires (or a poll, whichever comes first) and then takes it if unrenewed;
2. reads every row of ``hutch_schedules``, so an edit made by any path (API, CLI,
   a DBA's plain ``UPDATE``) applies at the next poll; when the run times of a
   row changed but its ``next_run_at`` did not (plain SQL), the active beat
   recomputes ``next_run_at``;
3. re-claims and publishes again the runs a dead beat claimed but never saw
   confirmed;
4. claims each due run (schedule, due time) in the transaction that renews the
   lease and advances ``next_run_at``, then publishes it and marks it sent; a late
   schedule sends one run, or with ``catch_up="all"`` each missed due time in turn;
5. now and then deletes results older than ``result_expires``, renewing the lease
   between batches.

Run as a service (``hutch beat``) it tells systemd when it is ready (holding or
waiting for the lease), which of the two (STATUS), that it stops, and pings the
watchdog from its loop (hutch.systemd), so a beat stuck in a round is restarted.

Every publish follows a committed transaction that renewed the lease (a claim or a
re-claim), so a beat that cannot renew (another beat took the lease, or its database
is slow or gone) publishes nothing more. The other way round, an active beat whose
publishes fail for STEP_DOWN_LEASES lease periods (its RabbitMQ node died) leaves the
lease to a standby that may reach another node.
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .. import systemd
from ..diagnostics import Reloader, install
from ..errors import BrokerError, ConfigurationError, HutchError, NotLeader, QueueNodeDown
from ..logs import get_logger
from ..schedules.entry import Plan, Schedule, from_config
from ..signals import beat_init
from ..stopping import stop_from_signal
from .cleanup import Cleanup
from .sender import ClientFactory, Sender
from .store import BeatStore, Claim, Lease, LeaseState, Run

if TYPE_CHECKING:
    from ..config import Settings

log = get_logger("hutch.beat")

Clock = Callable[[], dt.datetime]

MIN_SLEEP = 0.05
STEP_DOWN_LEASES = 2
"""An active beat that has not managed to publish for this many lease periods leaves
the lease, and keeps out of it for as long, so a standby whose broker node answers
takes over (its own node may be the one that died: a cluster, docs/ops.md)."""

LATE_GRACE = 5.0
"""Seconds late after which a run counts as caught up (logged) rather than on time."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def beat_identity() -> str:
    return f"beat@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Beat:
    """One beat process (or thread, for ``worker -B``): ``conf`` holds its settings and
    ``beat_schedule``; it reads and writes the result store of ``client`` (the app's
    shared client) and sends through it. ``clock`` is injectable for tests."""

    def __init__(self, conf: Settings, client: ClientFactory, *, clock: Clock = utcnow,
                 holder: str | None = None) -> None:
        if conf.beat_lease_seconds <= 2 * conf.beat_poll_interval:
            raise ConfigurationError(
                f"beat_lease_seconds: must be more than twice beat_poll_interval "
                f"({conf.beat_poll_interval}), got {conf.beat_lease_seconds}")
        self.conf = conf
        self.clock = clock
        self.holder = holder or beat_identity()
        self.store = BeatStore(client().store)
        self.sender = Sender(client, self.store)
        self.lease = Lease(self.store, conf.beat_lease_seconds, node=self._publishing_node)
        self.cleanup = Cleanup(self.store, conf)
        self.active = False
        self._lease_seen: LeaseState | None = None
        self._renewed: dt.datetime | None = None
        self._seen: dict[str, tuple[str, dt.datetime | None]] = {}
        self._broken: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._told: str | None = None  # the last STATUS sent to systemd
        self._unpublished_since: dt.datetime | None = None
        """When this beat's publishes began to fail (None: the last one worked)."""
        self._stepped_down_until: dt.datetime | None = None

    # -- lifetime -----------------------------------------------------------------------
    def run(self, install_signals: bool = True, sync: bool = True,
            service: bool = False) -> int:
        """Run until stopped (SIGTERM/SIGINT when ``install_signals``, which also sets
        up SIGUSR1 and SIGHUP: hutch.diagnostics); returns 0. ``sync=False``: the caller
        has synced ``beat_schedule`` already. ``service``: this beat is the process
        systemd started, and tells it how it is doing."""
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: stop_from_signal(self.stop))
            signal.signal(signal.SIGINT, lambda *_: stop_from_signal(self.stop))
            install(Reloader(self.conf))
        watchdog = systemd.Watchdog() if service else None
        beat_init.send(self)
        if sync:
            self.sync_config()
        self.check_clock()
        log.info("beat ready", beat=self.holder, poll=self.conf.beat_poll_interval,
                 lease=self.conf.beat_lease_seconds)
        while not self._stop.is_set():
            pause = self.tick()
            if watchdog is None:
                self._stop.wait(pause)
                continue
            self._tell_systemd()
            watchdog.alive()
            watchdog.wait(self._stop, pause)
        if service:
            systemd.stopping("stopping: releasing the lease")
        self._release()
        log.info("beat stopped", beat=self.holder)
        return 0

    def _tell_systemd(self) -> None:
        """READY at the first round that reached the lease (held, or held by another
        beat: a standby is ready too), STATUS when the role changes."""
        seen = self._lease_seen
        if seen is None:
            return
        text = "active: holds the lease, sends the schedules" if self.active else \
            f"standby: waiting for the lease held by {seen.holder or 'nobody'}"
        if text == self._told:
            return
        if self._told is None:
            systemd.ready(text)
        else:
            systemd.status(text)
        self._told = text

    def start(self) -> Beat:
        """Sync the config here (a bad ``beat_schedule`` fails in the caller), then run
        in a daemon thread (``worker -B`` with a thread-based pool)."""
        self.sync_config()
        self._thread = threading.Thread(target=self.run, name="hutch-beat", daemon=True,
                                        kwargs={"install_signals": False, "sync": False})
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _release(self) -> None:
        if self.active:
            try:
                self.lease.release(self.holder, self.clock())
            except HutchError as exc:
                log.warning("beat lease not released; it expires on its own", error=str(exc))
            self.active = False

    def check_clock(self) -> float | None:
        """Seconds this beat's clock is ahead of PostgreSQL's (None on SQLite: one host),
        with a warning past a quarter of the lease's slack (lease minus poll), so that
        two beats warned of nothing differ by less than half of it (docs/beat.md)."""
        try:
            before, server, after = self.clock(), self.store.server_time(), self.clock()
        except HutchError as exc:
            log.warning("beat clock not compared with the database's", error=str(exc))
            return None
        if server is None:
            return None
        skew = (before + (after - before) / 2 - server).total_seconds()
        conf = self.conf
        tolerated = (conf.beat_lease_seconds - conf.beat_poll_interval) / 4
        if abs(skew) > tolerated:
            log.warning("beat clock differs from the database server's: keep hosts in NTP "
                        "sync (the lease compares the beats' clocks)", beat=self.holder,
                        skew_seconds=round(skew, 3), warn_above=tolerated)
        return skew

    # -- config -------------------------------------------------------------------------
    def sync_config(self) -> None:
        """Upsert ``app.conf.beat_schedule`` into ``hutch_schedules``."""
        conf = self.conf
        entries = [from_config(name, spec, conf.timezone)
                   for name, spec in conf.beat_schedule.items()]
        for entry in entries:
            try:
                self.sender.check(entry)
            except ConfigurationError as exc:
                raise ConfigurationError(f"beat_schedule[{entry.name!r}]: {exc}") from None
        report = self.store.sync_config(entries, self.clock())
        for name in report.disabled:
            log.warning("schedule no longer in beat_schedule: disabled, not deleted "
                        "(`hutch schedule remove` deletes it)", schedule=name)
        if report.added or report.updated or report.restored:
            log.info("beat_schedule synced", added=report.added, updated=report.updated,
                     restored=report.restored)

    # -- one poll -----------------------------------------------------------------------
    def tick(self) -> float:
        """One round; returns the seconds to wait before the next."""
        poll = self.conf.beat_poll_interval
        now = self.clock()
        if self._stepped_down_until is not None and now < self._stepped_down_until:
            return poll  # out of the lease for a while: a standby takes it
        confirmed = self.sender.confirmed
        try:
            self._elect(now)
            readable, unreadable = self.store.readable()
            entries = {e.name: e for e in readable}
            for name, why in unreadable.items():
                self._report_broken(name, "-", why)
            if self.active:
                self._reschedule(entries, now)
                self.sender.resend(self.store.unsent(
                    now - dt.timedelta(seconds=self.conf.beat_lease_seconds)), entries,
                    now, self._reclaim)
                self._send_due(entries)
                self.cleanup.maybe_run(self.clock(), self._keep_lease)
            else:
                self._remember(entries)
        except NotLeader:
            if self.active:  # (a renewal that found the lease taken has said so already)
                log.warning("beat lease lost; standing by", beat=self.holder)
            self.active = False
            return poll
        except BrokerError as exc:
            log.error("beat round failed; retrying", error=str(exc))
            self._cannot_publish(now, confirmed)
            return poll
        except HutchError as exc:
            log.error("beat round failed; retrying", error=str(exc))
            return poll
        except Exception:  # noqa: BLE001 - see below
            # A bug met on one row would otherwise kill this beat, and then each standby
            # in turn on the same row: every schedule would stop. Log it and go on.
            log.exception("beat round failed unexpectedly; retrying")
            return poll
        if self.sender.confirmed != confirmed:
            self._unpublished_since = None
        return self._wait(entries.values(), poll) if self.active else self._standby_wait(poll)

    def _cannot_publish(self, now: dt.datetime, confirmed: int) -> None:
        """A round failed on the broker: past STEP_DOWN_LEASES lease periods without a
        confirmed publish, leave the lease (see STEP_DOWN_LEASES)."""
        if self.sender.confirmed != confirmed or self._unpublished_since is None:
            self._unpublished_since = now
        bound = STEP_DOWN_LEASES * self.conf.beat_lease_seconds
        if not self.active or (now - self._unpublished_since).total_seconds() < bound:
            return
        log.error("beat cannot publish: leaving the lease to a standby", beat=self.holder,
                  failing_for=round((now - self._unpublished_since).total_seconds(), 1),
                  stays_out_for=bound)
        self._release()
        self.active = False
        self._unpublished_since = None
        self._stepped_down_until = now + dt.timedelta(seconds=bound)

    def _publishing_node(self) -> str | None:
        """The broker node this beat publishes through, for the lease row (None when
        not known yet: it has not published since it started)."""
        try:
            return self.sender.client().broker.publishing_node
        except HutchError:
            return None

    def _elect(self, now: dt.datetime) -> None:
        was = self.active
        try:
            self._lease_seen = self.lease.acquire(self.holder, now)
        except HutchError:
            if was:  # it may lose the lease meanwhile: act again only once renewed
                log.warning("beat lease not renewed: standing by until the database answers",
                            beat=self.holder)
                self.active = False
            raise
        self.active = self._lease_seen.held
        if self.active:
            self._renewed = now
        if self.active and not was:
            log.info("beat active: this beat sends the schedules", beat=self.holder)
        elif was and not self.active:
            log.warning("beat lease taken by another beat; standing by", beat=self.holder)

    def _keep_lease(self) -> None:
        """Renew the lease if a poll has passed since the last renewal (between the
        statements of a long cleanup); raises NotLeader if it is lost."""
        now = self.clock()
        if self._renewed is None or \
                (now - self._renewed).total_seconds() >= self.conf.beat_poll_interval:
            self._elect(now)
            if not self.active:
                raise NotLeader()

    def _reclaim(self, run: Run) -> bool:
        """Own an unsent run before publishing it again (see BeatStore.reclaim)."""
        now = self.clock()
        if not self.store.reclaim(run, now, self.holder, self.lease):
            return False
        self._renewed = now
        return True

    def _standby_wait(self, poll: float) -> float:
        """Until the holder's lease expires, if that comes before the next poll: a
        standby takes over right when the lease it saw runs out."""
        seen = self._lease_seen
        if seen is None or seen.expires_at is None:
            return poll
        left = (seen.expires_at - self.clock()).total_seconds()
        return max(MIN_SLEEP, min(poll, left))

    def _remember(self, entries: dict[str, Schedule]) -> None:
        self._seen = {name: (e.fingerprint(), e.next_run_at) for name, e in entries.items()}

    def _reschedule(self, entries: dict[str, Schedule], now: dt.datetime) -> None:
        """Recompute ``next_run_at`` of rows whose run times changed by a path that did
        not recompute it (plain SQL), and of rows that have none yet."""
        for name, entry in entries.items():
            seen = self._seen.get(name)
            changed = seen is not None and seen[0] != entry.fingerprint() \
                and seen[1] == entry.next_run_at
            if not (changed or (entry.next_run_at is None and entry.enabled)):
                continue
            try:
                wanted = entry.first_run(now) if entry.enabled else None
            except ConfigurationError as exc:
                self._report_broken(entry.name, entry.fingerprint(), str(exc))
                continue
            if wanted != entry.next_run_at and self.store.set_next_run(entry, wanted, now):
                log.info("schedule changed; next run recomputed", schedule=name,
                         next_run_at=wanted.isoformat() if wanted else None)
                entry.next_run_at = wanted
        self._remember(entries)

    def _send_due(self, entries: dict[str, Schedule]) -> None:
        """Claim and send every due run, oldest due time first across the schedules (a
        ``catch_up="all"`` backlog too, one claim per run)."""
        now = self.clock()
        plans: dict[str, Plan] = {}
        ready: list[tuple[dt.datetime, str, int]] = []
        for entry in entries.values():
            if not (entry.enabled and entry.next_run_at is not None
                    and entry.next_run_at <= now):
                continue
            try:
                plans[entry.name] = entry.plan(now)
            except ConfigurationError as exc:
                self._report_broken(entry.name, entry.fingerprint(), str(exc))
                continue
            ready.append((plans[entry.name].backlog.runs[0], entry.name, 0))
        heapq.heapify(ready)
        while ready and not self._stop.is_set():
            due, name, index = heapq.heappop(ready)
            plan = plans[name]
            if not self._send_one(entries[name], due, plan, index):
                continue  # claimed by another beat, or the row changed: read it again
            if index + 1 < len(plan.backlog.runs):
                heapq.heappush(ready, (plan.backlog.runs[index + 1], name, index + 1))

    def _send_one(self, entry: Schedule, due: dt.datetime, plan: Plan, index: int) -> bool:
        """Claim the run of ``entry`` due at ``due`` and publish it; False if the row
        changed meanwhile (the rest of its plan waits for the next round)."""
        now = self.clock()
        following = plan.next_after(index)
        task_id = str(uuid.uuid4())
        try:
            message = self.sender.message(entry, task_id)
        except ConfigurationError as exc:
            self._report_broken(entry.name, entry.fingerprint(), str(exc))
            return False
        claim = self.store.claim(entry, due, following, task_id, now, self.holder, self.lease)
        if claim is Claim.LOST:
            return False
        self._renewed = now
        entry.next_run_at = following
        self._seen[entry.name] = (entry.fingerprint(), following)
        if claim is Claim.TAKEN:
            log.info("run claimed before (next_run_at was moved back): not sent again",
                     schedule=entry.name, due_at=due.isoformat())
            return True
        if index == 0:
            self._log_catch_up(entry, due, plan, now)
        try:
            self.sender.send(message, self.clock())
        except HutchError as exc:  # a queue's node down was told once, as an error, already
            (log.warning if isinstance(exc, QueueNodeDown) else log.error)(
                "scheduled run not published; it is retried", schedule=entry.name,
                task_id=task_id, error=str(exc))
            return True
        log.info("scheduled run sent", schedule=entry.name, task=entry.task, task_id=task_id,
                 due_at=due.isoformat(),
                 next_run_at=following.isoformat() if following else None)
        return True

    def _log_catch_up(self, entry: Schedule, due: dt.datetime, plan: Plan,
                      now: dt.datetime) -> None:
        """Say what a late schedule sends, once per catch-up (at its first claim)."""
        late = (now - due).total_seconds()
        backlog = plan.backlog
        if backlog.skipped:
            log.warning("schedule caught up after downtime: over catch_up_limit, the oldest "
                        "missed runs are skipped", schedule=entry.name,
                        skipped_runs=f"{backlog.skipped}+" if backlog.more else backlog.skipped,
                        first_skipped=_iso(backlog.first_skipped),
                        last_skipped=_iso(backlog.last_skipped),
                        catch_up_limit=entry.catch_up_limit)
        if len(backlog.runs) > 1:
            log.warning("schedule caught up after downtime: each missed run sent",
                        schedule=entry.name, runs=len(backlog.runs),
                        first_due_at=_iso(backlog.runs[0]), last_due_at=_iso(backlog.runs[-1]))
        elif plan.folded or late > max(LATE_GRACE, 2 * self.conf.beat_poll_interval):
            log.warning("schedule caught up after downtime: sent once for the missed runs",
                        schedule=entry.name, due_at=due.isoformat(),
                        late_seconds=round(late, 1), missed_runs=plan.folded + 1)

    def _report_broken(self, name: str, fingerprint: str, why: str) -> None:
        """Log a row that cannot be sent, once until it changes."""
        if self._broken.get(name) != fingerprint + why:
            self._broken[name] = fingerprint + why
            log.error("schedule skipped: its row is not valid", schedule=name, error=why)

    def _wait(self, entries: Iterable[Schedule], poll: float) -> float:
        """Until the next poll, or the next due run if that comes sooner."""
        now = self.clock()
        soonest = min((e.next_run_at for e in entries if e.enabled and e.next_run_at),
                      default=None)
        if soonest is None:
            return poll
        return max(MIN_SLEEP, min(poll, (soonest - now).total_seconds()))


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None

