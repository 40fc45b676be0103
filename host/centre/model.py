"""The centre's data: event kinds, its configuration, and the records it keeps per device,
alarm, downlink and link. No behaviour beyond small properties."""
from dataclasses import dataclass, field
from typing import Any, Optional

from host.centre.proximity import ProximityConfig
from protocol import codec

# Event kinds
HELLO = "hello"
ALARM_RAISED = "alarm_raised"
ALARM_REPEAT = "alarm_repeat"  # the wearer pressed again while the alarm was active
ALARM_ACKED = "alarm_acked"  # the operator acked: OPERATOR_ACK queued
ALARM_ACK_DELIVERED = "alarm_ack_delivered"  # the device transport-acked the OPERATOR_ACK
ALARM_CANCELLED = "alarm_cancelled"
ALARM_CLEARED = "alarm_cleared"
PROXIMITY = "proximity"
NOT_REPORTING = "not_reporting"
REPORTING = "reporting"
REFUSED = "refused"
DUPLICATE = "duplicate"
STALE_HELLO = "stale_hello"
RATE_LIMITED = "rate_limited"
DOWNLINK_RESERVE = 256  # downlink counters reserved per write (reserve-ahead, SPEC 3.3)
SCHEMA_MISMATCH = "schema_mismatch"
DEVICE_EVENT = "device_event"
DOWNLINK_EXPIRED = "downlink_expired"
LOCATE_REQUESTED = "locate_requested"
LOCATE_HELD = "locate_held"  # a locate_now the no-fix limit held back (once per window)
ESCALATED = "escalated"  # the operator must look now (silence.py, proximity_watch.py)
MODE_ORDERED = "mode_ordered"  # set_mode() was called: the MODE downlink is queued
MODE_CHANGED = "mode_changed"  # the device's scheme changed (modes.py), and who did it
CLEAR_REQUESTED = "clear_requested"  # the operator sent COMMAND clear_alarm

# Downlinks where only the newest matters: a newer one stops the retries of an older one.
SUPERSEDING = ("PROXIMITY", "TIME_SYNC", "CONFIG")
SUPERSEDE_LOCATE = "COMMAND:locate_track"  # tracking locate_now commands supersede each other
SUPERSEDE_CONFIRM = "COMMAND:locate_once"  # so do one-fix requests for a confirmation


@dataclass
class CentreConfig:
    heartbeat_s: int = 900
    device_heartbeat_s: dict = field(default_factory=dict)  # device id -> interval
    low_power_heartbeat_s: int = 3600
    missed_heartbeats: int = 2
    silence_grace_ms: int = 60_000
    urgent_silence_ms: int = 60_000  # silence during an open alarm or proximity (silence.py)
    operator_ack_delay_ms: int = 5_000
    # The emulated operator clears (COMMAND clear_alarm) each open panic alarm this long after
    # it first arrives; None: the operator never does, and the alarm stays active.
    operator_clear_ms: Optional[int] = None
    operator_id: int = 1
    pairs: dict = field(default_factory=dict)  # victim device id -> offender id
    proximity: ProximityConfig = field(default_factory=ProximityConfig)
    downlink_retry_ms: int = 10_000
    downlink_retry_max_ms: int = 300_000
    downlink_expiry_ms: int = 3_600_000
    resend_on_contact_ms: int = 2_000  # resend unacked downlinks when heard, if sent this long ago
    refusal_flush_ms: int = 60_000  # aggregated refusals are written this often per link
    refused_per_s: int = 200  # refusals per link per second before its input is dropped


@dataclass(frozen=True)
class Event:
    time_ms: int
    kind: str
    device_id: Optional[int]
    detail: dict

    def line(self):
        """One human line, for `vigil centre`."""
        parts = ["%d" % self.time_ms, self.kind]
        if self.device_id is not None:
            parts.append("device=%d" % self.device_id)
        parts.extend("%s=%s" % (k, v) for k, v in self.detail.items())
        return " ".join(parts)


@dataclass
class Device:
    device_id: int
    link_id: Any = None
    key_id: Optional[int] = None
    last_seen_ms: Optional[int] = None
    last_heartbeat_ms: Optional[int] = None
    battery_mv: Optional[int] = None
    battery_pct: Optional[int] = None
    status: int = 0
    reported_heartbeat_s: Optional[int] = None  # the interval the device last said it keeps
    reported_mode: Optional[int] = None  # the scheme the device last said it is in
    firmware: Optional[str] = None
    boot_count: Optional[int] = None
    reset_cause: Optional[int] = None
    schema_ok: Optional[bool] = None  # None until a HELLO
    reporting: bool = True
    frames_delivered: int = 0
    duplicates: int = 0
    hello_counter: Optional[int] = None  # counter of the HELLO that set schema_ok
    hello_key_id: Optional[int] = None
    highest_seen: dict = field(default_factory=dict)  # str(key_id) -> highest authentic counter

    def state(self):
        """What survives a centre restart (the link does not)."""
        out = {k: v for k, v in self.__dict__.items() if k != "link_id"}
        out["highest_seen"] = dict(self.highest_seen)
        return out


@dataclass
class Alarm:
    device_id: int
    alarm_id: int
    kind: int
    raised_time_ms: int  # the device's clock
    arrived_ms: int  # first arrival at the centre
    historic: bool = False
    ack_due_ms: Optional[int] = None
    acked_ms: Optional[int] = None
    ack_counter: Optional[int] = None
    ack_delivered_ms: Optional[int] = None
    cancelled_ms: Optional[int] = None
    cleared_ms: Optional[int] = None
    clear_due_ms: Optional[int] = None  # when the operator sends clear_alarm
    clear_sent_ms: Optional[int] = None

    @property
    def closed(self):
        return self.cancelled_ms is not None or self.cleared_ms is not None


@dataclass
class Downlink:
    device_id: int
    counter: int
    name: str
    wire: bytes
    queued_ms: int
    sent_ms: Optional[int] = None
    tries: int = 0
    next_retry_ms: Optional[int] = None
    acked_ms: Optional[int] = None
    done: bool = False  # acked, superseded or expired
    supersede: Optional[str] = None  # a newer downlink with the same key replaces this one
    fields: Optional[dict] = None  # kept to re-seal it under a new counter after a reset


class _Link:
    """Per-link receive state: the deframer, the refusal budget and pending aggregates."""

    __slots__ = ("deframer", "budget_start_ms", "refused_in_budget", "muted_until_ms",
                 "pending", "flushed_ms")

    def __init__(self, now_ms):
        self.deframer = codec.Deframer()
        self.budget_start_ms = now_ms
        self.refused_in_budget = 0
        self.muted_until_ms = 0
        self.pending = {}  # outcome -> [count, bytes, first_ms, last_ms, detail]
        self.flushed_ms = now_ms

