"""The centre's evidence log: an append-only SQLite database.

Every authentic frame delivered, every downlink queued and every transport ACK of one, every
alarm state change, every proximity decision with all its inputs, and every event. Refused
frames and duplicates are counted, not logged one by one: one `refusals` row per link,
outcome and flush interval (so a flood grows the log by O(peers), not O(frames)). Triggers
refuse UPDATE and DELETE, so rows can only be added.

Besides the evidence, the same file keeps the centre's working state, which is updated in
place (`device_state`: per-device state as JSON; `counters`: reserve-ahead downlink counters),
so that a restarted centre resumes its devices and never reuses a downlink counter.
"""
import json
import sqlite3

_TABLES = {
    "frames": """rx_ms INTEGER NOT NULL, link TEXT, device_id INTEGER, counter INTEGER,
        type TEXT, flags INTEGER, historic INTEGER, fix_times_ms TEXT, outcome TEXT NOT NULL,
        detail TEXT, key_id INTEGER""",
    "refusals": """time_ms INTEGER NOT NULL, link TEXT, outcome TEXT NOT NULL,
        count INTEGER NOT NULL, bytes INTEGER NOT NULL, first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL, detail TEXT""",
    "downlinks": """queued_ms INTEGER NOT NULL, device_id INTEGER NOT NULL,
        counter INTEGER NOT NULL, type TEXT NOT NULL, fields TEXT NOT NULL""",
    "downlink_acks": """time_ms INTEGER NOT NULL, device_id INTEGER NOT NULL,
        counter INTEGER NOT NULL, type TEXT NOT NULL, queued_ms INTEGER NOT NULL""",
    "alarms": """time_ms INTEGER NOT NULL, device_id INTEGER NOT NULL, alarm_id INTEGER NOT NULL,
        kind INTEGER, change TEXT NOT NULL, raised_time_ms INTEGER, counter INTEGER,
        historic INTEGER""",
    "proximity": """time_ms INTEGER NOT NULL, victim_id INTEGER NOT NULL,
        offender_id INTEGER NOT NULL,
        victim_fix_ms INTEGER, victim_lat_e7 INTEGER, victim_lon_e7 INTEGER,
        victim_accuracy_m REAL, victim_age_ms INTEGER,
        offender_fix_ms INTEGER, offender_lat_e7 INTEGER, offender_lon_e7 INTEGER,
        offender_accuracy_m REAL, offender_age_ms INTEGER,
        distance_m REAL, combined_accuracy_m REAL,
        warning_m REAL, alarm_m REAL, hysteresis REAL, max_fix_age_ms INTEGER,
        confirm_fixes INTEGER, uncertain_fraction REAL,
        candidate INTEGER, streak INTEGER, previous INTEGER, state INTEGER,
        downlink_counter INTEGER, basis TEXT, victim_radius_m REAL, offender_radius_m REAL,
        victim_speed_mps REAL, offender_speed_mps REAL, predicted_min_m REAL,
        horizon_ms INTEGER, escalate INTEGER""",
    "events": """time_ms INTEGER NOT NULL, kind TEXT NOT NULL, device_id INTEGER,
        detail TEXT""",
}


# Proximity columns added by issue 9 (stale victim fixes, predicted crossings).
_PROXIMITY_V2 = (("basis", "TEXT"), ("victim_radius_m", "REAL"), ("offender_radius_m", "REAL"),
                 ("victim_speed_mps", "REAL"), ("offender_speed_mps", "REAL"),
                 ("predicted_min_m", "REAL"), ("horizon_ms", "INTEGER"), ("escalate", "INTEGER"))


class EvidenceLog:
    def __init__(self, path=":memory:"):
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            for name, columns in _TABLES.items():
                self._db.execute("CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY, %s)"
                                 % (name, columns))
                for verb in ("UPDATE", "DELETE"):
                    self._db.execute(
                        "CREATE TRIGGER IF NOT EXISTS %s_no_%s BEFORE %s ON %s BEGIN "
                        "SELECT RAISE(ABORT, 'the evidence log is append-only'); END"
                        % (name, verb.lower(), verb, name))
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(frames)")}
            if "key_id" not in columns:  # a log written before protocol v2
                self._db.execute("ALTER TABLE frames ADD COLUMN key_id INTEGER")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(proximity)")}
            for name, kind in _PROXIMITY_V2:  # a log written before issue 9
                if name not in columns:
                    self._db.execute("ALTER TABLE proximity ADD COLUMN %s %s" % (name, kind))
            self._db.execute("CREATE INDEX IF NOT EXISTS frames_by_counter "
                             "ON frames (device_id, counter)")
            self._db.execute("CREATE TABLE IF NOT EXISTS device_state "
                             "(device_id INTEGER PRIMARY KEY, state TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS counters (device_id INTEGER NOT NULL, "
                             "key_id INTEGER NOT NULL, reserved INTEGER NOT NULL, "
                             "PRIMARY KEY (device_id, key_id))")
            self._db.commit()
        except sqlite3.Error as e:
            raise OSError("evidence log %s: %s" % (self.path, e)) from None

    def _insert(self, table, **values):
        names = ", ".join(values)
        marks = ", ".join("?" * len(values))
        self._db.execute("INSERT INTO %s (%s) VALUES (%s)" % (table, names, marks),
                         tuple(values.values()))

    def frame(self, rx_ms, link, outcome, frame=None, detail=""):
        if frame is None:
            self._insert("frames", rx_ms=rx_ms, link=str(link), outcome=outcome, detail=detail)
            return
        self._insert("frames", rx_ms=rx_ms, link=str(link), device_id=frame.device_id,
                     key_id=frame.key_id, counter=frame.counter, type=frame.name,
                     flags=frame.flags,
                     historic=int(frame.historic),
                     fix_times_ms=json.dumps(fix_times(frame)), outcome=outcome, detail=detail)

    def refusals(self, time_ms, link, outcome, count, nbytes, first_ms, last_ms, detail):
        """One aggregate row: `count` frames (`nbytes` bytes) from `link` had `outcome`."""
        self._insert("refusals", time_ms=time_ms, link=str(link), outcome=outcome, count=count,
                     bytes=nbytes, first_ms=first_ms, last_ms=last_ms, detail=detail)

    def downlink(self, queued_ms, device_id, counter, name, fields):
        self._insert("downlinks", queued_ms=queued_ms, device_id=device_id, counter=counter,
                     type=name, fields=json.dumps(fields, sort_keys=True))

    def downlink_ack(self, time_ms, device_id, counter, name, queued_ms):
        self._insert("downlink_acks", time_ms=time_ms, device_id=device_id, counter=counter,
                     type=name, queued_ms=queued_ms)

    def alarm(self, time_ms, device_id, alarm_id, kind, change, raised_time_ms, counter=None,
              historic=False):
        self._insert("alarms", time_ms=time_ms, device_id=device_id, alarm_id=alarm_id, kind=kind,
                     change=change, raised_time_ms=raised_time_ms, counter=counter,
                     historic=int(historic))

    def proximity(self, victim_id, offender_id, decision, config, downlink_counter=None):
        v, o = decision.victim, decision.offender
        self._insert(
            "proximity", time_ms=decision.time_ms, victim_id=victim_id, offender_id=offender_id,
            victim_fix_ms=v.time_ms, victim_lat_e7=v.lat_e7, victim_lon_e7=v.lon_e7,
            victim_accuracy_m=v.accuracy_m, victim_age_ms=decision.victim_age_ms,
            offender_fix_ms=o.time_ms, offender_lat_e7=o.lat_e7, offender_lon_e7=o.lon_e7,
            offender_accuracy_m=o.accuracy_m, offender_age_ms=decision.offender_age_ms,
            distance_m=decision.distance_m, combined_accuracy_m=decision.combined_accuracy_m,
            warning_m=config.warning_m, alarm_m=config.alarm_m, hysteresis=config.hysteresis,
            max_fix_age_ms=config.max_fix_age_ms, confirm_fixes=config.confirm_fixes,
            uncertain_fraction=config.uncertain_fraction, candidate=decision.candidate,
            streak=decision.streak, previous=decision.previous, state=decision.state,
            downlink_counter=downlink_counter, basis=decision.basis,
            victim_radius_m=decision.victim_radius_m,
            offender_radius_m=decision.offender_radius_m,
            victim_speed_mps=decision.victim_speed_mps,
            offender_speed_mps=decision.offender_speed_mps,
            predicted_min_m=decision.predicted_min_m, horizon_ms=decision.horizon_ms,
            escalate=int(decision.escalate))

    def event(self, event):
        self._insert("events", time_ms=event.time_ms, kind=event.kind, device_id=event.device_id,
                     detail=json.dumps(event.detail, sort_keys=True, default=str))

    def max_counters(self, table, where=""):
        """{device_id: highest counter} in `frames` (delivered uplinks) or `downlinks`."""
        rows = self._db.execute("SELECT device_id, MAX(counter) FROM %s %s GROUP BY device_id"
                                % (table, where))
        return {d: c for d, c in rows if d is not None and c is not None}

    def windows(self, size):
        """{(device_id, key_id): (highest, [delivered counters within `size` below it])}: the
        uplink replay windows, exactly as they stood (SPEC 4.4)."""
        out = {}
        rows = self._db.execute(
            "SELECT device_id, key_id, MAX(counter) FROM frames WHERE outcome = 'delivered' "
            "AND device_id IS NOT NULL GROUP BY device_id, key_id")
        for device_id, key_id, highest in rows.fetchall():
            below = [c for (c,) in self._db.execute(
                "SELECT DISTINCT counter FROM frames WHERE outcome = 'delivered' AND "
                "device_id = ? AND key_id IS ? AND counter >= ? AND counter < ?",
                (device_id, key_id, highest - size, highest))]
            out[(device_id, key_id)] = (highest, below)
        return out

    def delivered(self, device_id, counter, key_id=None):
        """True if an uplink with this counter from this device (and key id; rows from
        before protocol v2 carry none and match any) was ever delivered."""
        return self._db.execute(
            "SELECT 1 FROM frames WHERE device_id = ? AND counter = ? AND outcome = 'delivered'"
            " AND (key_id IS NULL OR key_id = ?) LIMIT 1",
            (device_id, counter, key_id)).fetchone() is not None

    def save_state(self, device_id, state):
        self._db.execute("INSERT OR REPLACE INTO device_state (device_id, state) VALUES (?, ?)",
                         (device_id, json.dumps(state, sort_keys=True)))

    def states(self):
        """{device_id: state dict} as last saved."""
        return {d: json.loads(s) for d, s in self._db.execute(
            "SELECT device_id, state FROM device_state")}

    def reserve(self, device_id, key_id, reserved):
        """Persist a downlink counter reservation at once (reserve-ahead, SPEC 3.3): every
        downlink counter ever used is below it."""
        self._db.execute("INSERT OR REPLACE INTO counters (device_id, key_id, reserved) "
                         "VALUES (?, ?, ?)", (device_id, key_id, reserved))
        self._db.commit()

    def reservations(self):
        return {(d, k): r for d, k, r in self._db.execute(
            "SELECT device_id, key_id, reserved FROM counters")}

    def rows(self, table):
        """All rows of a table as dicts, in insertion order (for tests and reports)."""
        cursor = self._db.execute("SELECT * FROM %s ORDER BY id" % table)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def commit(self):
        self._db.commit()

    def close(self):
        self._db.commit()
        self._db.close()


def fix_times(frame):
    """The fix times a frame carries, for the frames table."""
    fields = frame.fields
    if "fixes" in fields:
        return [f["fix_time_ms"] for f in fields["fixes"]]
    fix = fields.get("fix") or fields.get("last_fix")
    return [fix["fix_time_ms"]] if fix else []
