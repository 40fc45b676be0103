"""The virtual GNSS receiver: a route in, NMEA RMC/GGA/GSA at 1 Hz out on its UART."""
import math
import xml.etree.ElementTree as ET

GNSS_UART_ID = 2
GNSS_EN_PIN = 4
_EARTH_RADIUS_M = 6_371_000.0
_KNOTS_PER_MPS = 3600 / 1852
_DEFAULT_POSITION = (52.0907, 5.1214)  # Utrecht


def nmea_sentence(body):
    """'$' + body + '*' + checksum + CRLF, as bytes."""
    checksum = 0
    for ch in body.encode("ascii"):
        checksum ^= ch
    return ("$%s*%02X\r\n" % (body, checksum)).encode("ascii")


def _lat_field(lat):
    a = abs(lat)
    deg = int(a)
    return "%02d%08.5f" % (deg, (a - deg) * 60), "N" if lat >= 0 else "S"


def _lon_field(lon):
    a = abs(lon)
    deg = int(a)
    return "%03d%08.5f" % (deg, (a - deg) * 60), "E" if lon >= 0 else "W"


class Route:
    """Piecewise-straight movement through waypoints, from `start_ms` of virtual time.

    waypoints: [(lat, lon)], [(lat, lon, speed_mps)] or [(lat, lon, speed_mps, dwell_s)]:
    the speed applies to the leg that starts at that point (`speed_mps` is the default, None
    too), and the route stands still there for dwell_s before leaving (an office, a shop).
    Before the start and after the last point the position stands still.
    """

    def __init__(self, waypoints, speed_mps=1.4, start_ms=0.0, alt_m=10.0):
        if not waypoints:
            raise ValueError("route: needs at least one waypoint")
        points = []
        for i, wp in enumerate(waypoints):
            if len(wp) not in (2, 3, 4):
                raise ValueError("route waypoint %d %r: expected (lat, lon[, speed_mps[, dwell_s]])"
                                 % (i, wp))
            lat, lon = float(wp[0]), float(wp[1])
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError("route waypoint %d %r: latitude/longitude out of range" % (i, wp))
            speed = float(wp[2]) if len(wp) >= 3 and wp[2] is not None else float(speed_mps)
            if speed <= 0 and i < len(waypoints) - 1:
                raise ValueError("route waypoint %d: speed must be > 0" % i)
            dwell_s = float(wp[3]) if len(wp) == 4 else 0.0
            if dwell_s < 0:
                raise ValueError("route waypoint %d: dwell_s must be >= 0" % i)
            points.append((lat, lon, speed, dwell_s))
        self.alt_m = alt_m
        self.start_ms = start_ms
        self._legs = []  # (t0_ms, t1_ms, lat0, lon0, lat1, lon1, speed, course)
        t = start_ms
        for (lat0, lon0, speed, dwell_s), (lat1, lon1, _, _) in zip(points, points[1:],
                                                                     strict=False):
            if dwell_s:  # standing still: a leg from the point to itself at speed 0
                course = self._legs[-1][7] if self._legs else 0.0
                self._legs.append((t, t + dwell_s * 1000, lat0, lon0, lat0, lon0, 0.0, course))
                t += dwell_s * 1000
            north, east = _offset_m(lat0, lon0, lat1, lon1)
            dist = math.hypot(north, east)
            course = math.degrees(math.atan2(east, north)) % 360
            duration = dist / speed * 1000
            self._legs.append((t, t + duration, lat0, lon0, lat1, lon1, speed, course))
            t += duration
        self.end_ms = t
        self._first = points[0][:2]
        self._last = points[-1][:2]

    @classmethod
    def from_gpx(cls, gpx, speed_mps=1.4, start_ms=0.0):
        """A route through a GPX file's track (or route) points; `gpx` is a path or XML text."""
        text = gpx
        if not str(gpx).lstrip().startswith("<"):
            with open(gpx, encoding="utf-8") as f:
                text = f.read()
        try:
            root = ET.fromstring(text)
        except ET.ParseError as e:
            raise ValueError("GPX %s: not valid XML: %s" % (str(gpx)[:60], e)) from None
        points = [(float(el.get("lat")), float(el.get("lon"))) for el in root.iter()
                  if el.tag.rsplit("}", 1)[-1] in ("trkpt", "rtept", "wpt")]
        if not points:
            raise ValueError("GPX %s: no trkpt/rtept/wpt points" % str(gpx)[:60])
        return cls(points, speed_mps=speed_mps, start_ms=start_ms)

    def at(self, t_ms):
        """(lat, lon, alt_m, speed_mps, course_deg) at virtual time t_ms."""
        if not self._legs or t_ms <= self._legs[0][0]:
            course = self._legs[0][7] if self._legs else 0.0
            return self._first[0], self._first[1], self.alt_m, 0.0, course
        for t0, t1, lat0, lon0, lat1, lon1, speed, course in self._legs:
            if t_ms < t1:
                f = (t_ms - t0) / (t1 - t0) if t1 > t0 else 1.0
                return (lat0 + f * (lat1 - lat0), lon0 + f * (lon1 - lon0), self.alt_m, speed, course)
        return self._last[0], self._last[1], self.alt_m, 0.0, self._legs[-1][7]


def _offset_m(lat0, lon0, lat1, lon1):
    """(north_m, east_m) from point 0 to point 1 (equirectangular: fine over tens of km)."""
    mean_lat = math.radians((lat0 + lat1) / 2)
    north = math.radians(lat1 - lat0) * _EARTH_RADIUS_M
    east = math.radians(lon1 - lon0) * _EARTH_RADIUS_M * math.cos(mean_lat)
    return north, east


class Gnss:
    """A GNSS receiver powered by the enable pin, talking NMEA on its UART at 1 Hz.

    Options: route (Route, or list of waypoints), position (lat, lon) when standing still,
    indoor [(start_ms, end_ms)] spans without a fix, talker ("GN"), and ttff overrides
    (cold_ttff_s, warm_ttff_s, hot_ttff_s) else the board profile's.
    `sessions` lists (start_ms, start_kind, ttff_ms or None) per power-up; `commands` what
    the firmware wrote to the receiver.
    """

    def __init__(self, dev, route=None, position=None, indoor=(), talker="GN",
                 en_pin=GNSS_EN_PIN, uart_id=GNSS_UART_ID, cold_ttff_s=None, warm_ttff_s=None,
                 hot_ttff_s=None):
        self.dev = dev
        self.profile = dict(dev.profile["gnss"])
        for name, value in (("cold_ttff_s", cold_ttff_s), ("warm_ttff_s", warm_ttff_s),
                            ("hot_ttff_s", hot_ttff_s)):
            if value is not None:
                self.profile[name] = float(value)
        if isinstance(route, (list, tuple)):
            route = Route(route)
        self.route = route or Route([position or _DEFAULT_POSITION])
        self.indoor = [tuple(span) for span in indoor]
        self.talker = talker
        self.uart_id = uart_id
        self.rng = dev.world.rng(dev.device_id, "gnss")
        self.state = "off"
        self.backup = True  # the receiver's backup supply keeps ephemeris and time
        self.last_fix_us = None
        self.sessions = []
        self.commands = []
        self.sentences_sent = 0
        self._gen = 0
        self._acq_left_us = 0
        self._session_fixed = False
        self._set_energy()
        dev.on_output(en_pin, self._enable)
        dev.attach_uart(uart_id, self.on_device_write)

    def set_route(self, route, start_ms=None):
        if isinstance(route, (list, tuple)):
            route = Route(route, start_ms=self.dev.world.now_ms if start_ms is None else start_ms)
        self.route = route

    def is_indoor(self, t_ms):
        return any(a <= t_ms < b for a, b in self.indoor)

    def on_device_write(self, data):
        self.commands.append((self.dev.world.now_ms, bytes(data)))

    def on_power_cut(self):
        self.backup = False
        self.last_fix_us = None

    def _set_energy(self):
        p = self.profile
        if self.state == "acquiring":
            self.dev.energy.set("gnss", p["acquisition_ma"], "acquisition")
        elif self.state == "tracking":
            self.dev.energy.set("gnss", p["tracking_ma"], "tracking")
        else:
            self.dev.energy.set("gnss", p["backup_ma"] if self.backup else 0.0, "backup")

    def _ttff_us(self, kind):
        base = self.profile[kind + "_ttff_s"]
        return round(base * self.rng.uniform(0.85, 1.3) * 1_000_000)

    def _enable(self, level):
        world = self.dev.world
        self._gen += 1
        if level is None:
            # A floating enable line: the worse case is a receiver that stays powered.
            world.record(self.dev.device_id, "gnss", "enable floating")
            level = 1
        if not level:
            self.state = "off"
            self.backup = True
            self._set_energy()
            world.record(self.dev.device_id, "gnss", "off")
            return
        if self.state != "off":
            return
        p = self.profile
        kind = "cold"
        if self.last_fix_us is not None and self.backup:
            age_s = (world.now_us - self.last_fix_us) / 1e6
            kind = "hot" if age_s < p["hot_window_s"] else "warm" if age_s < p["warm_window_s"] else "cold"
        self.state = "acquiring"
        self._acq_left_us = self._ttff_us(kind)
        self._session_fixed = False
        self.sessions.append([world.now_ms, kind, None])
        self._set_energy()
        world.record(self.dev.device_id, "gnss", "on " + kind)
        world.at_us(world.now_us + 1_000_000, self._tick, self._gen)

    def _tick(self, gen):
        if gen != self._gen or self.state == "off":
            return
        world = self.dev.world
        now_ms = world.now_ms
        indoor = self.is_indoor(now_ms)
        if self.state == "acquiring" and not indoor:
            self._acq_left_us -= 1_000_000
            if self._acq_left_us <= 0:
                self.state = "tracking"
                self._set_energy()
                if not self._session_fixed:
                    self._session_fixed = True
                    self.sessions[-1][2] = now_ms - self.sessions[-1][0]
                    self.dev.energy.count("fixes")
                    world.record(self.dev.device_id, "gnss", "fix")
        elif self.state == "tracking" and indoor:
            self.state = "acquiring"  # signal lost: a hot reacquisition once outside again
            self._acq_left_us = self._ttff_us("hot")
            self._set_energy()
            world.record(self.dev.device_id, "gnss", "lost")
        if self.state == "tracking":
            self.last_fix_us = world.now_us
        data = self.sentences(now_ms)
        self.sentences_sent += 3
        self.dev.feed_uart(self.uart_id, data)
        world.at_us(world.now_us + 1_000_000, self._tick, gen)

    def sentences(self, t_ms):
        """RMC, GGA and GSA for virtual time t_ms in the receiver's current state."""
        utc_ms = self.dev.world.utc_start_ms + int(t_ms)
        secs, ms = divmod(utc_ms, 1000)
        days, rem = divmod(secs, 86400)
        hhmmss = "%02d%02d%02d.%02d" % (rem // 3600, rem // 60 % 60, rem % 60, ms // 10)
        y, m, d = _civil_from_days(days)
        ddmmyy = "%02d%02d%02d" % (d, m, y % 100)
        t = self.talker
        if self.state != "tracking":
            sats = self.rng.randint(0, 3)
            return b"".join((
                nmea_sentence("%sRMC,%s,V,,,,,,,%s,,,N,V" % (t, hhmmss, ddmmyy)),
                nmea_sentence("%sGGA,%s,,,,,0,%02d,99.99,,,,,," % (t, hhmmss, sats)),
                nmea_sentence("%sGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1" % t),
            ))
        p = self.profile
        lat, lon, alt, speed, course = self.route.at(t_ms)
        sats = max(4, min(12, p["satellites"] + self.rng.randint(-2, 2)))
        hdop = round(p["hdop"] * self.rng.uniform(0.9, 1.5), 2)
        sigma_m = hdop * p["uere_m"] / 2
        lat += self.rng.gauss(0.0, sigma_m) / 111_320
        lon += self.rng.gauss(0.0, sigma_m) / (111_320 * max(0.01, math.cos(math.radians(lat))))
        lat_s, ns = _lat_field(lat)
        lon_s, ew = _lon_field(lon)
        svs = ",".join(["%02d" % (i + 1) for i in range(sats)] + [""] * (12 - sats))
        pdop, vdop = round(hdop * 1.6, 2), round(hdop * 1.3, 2)
        return b"".join((
            nmea_sentence("%sRMC,%s,A,%s,%s,%s,%s,%.3f,%.2f,%s,,,A,V"
                          % (t, hhmmss, lat_s, ns, lon_s, ew, speed * _KNOTS_PER_MPS, course, ddmmyy)),
            nmea_sentence("%sGGA,%s,%s,%s,%s,%s,1,%02d,%.2f,%.1f,M,46.9,M,,"
                          % (t, hhmmss, lat_s, ns, lon_s, ew, sats, hdop, alt)),
            nmea_sentence("%sGSA,A,3,%s,%.2f,%.2f,%.2f,1" % (t, svs, pdop, hdop, vdop)),
        ))


def _civil_from_days(days):
    """(year, month, day) for days since 1970-01-01."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d
