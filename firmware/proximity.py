"""Proximity: the centre's PROXIMITY level, the wearer's haptic on a rise, and its lapse
without a refresh. Functions of the core: each
takes the Core first (its state lives there, firmware/core.py)."""
from firmware import positioning
from firmware.clock import as_int

# Haptic feedback to the wearer per PROXIMITY level (a rise in level only).
_PROXIMITY_HAPTIC = {1: "proximity_uncertain", 2: "proximity_warning", 3: "proximity_alarm"}


def rx_proximity(c, fields, now, out):
    level = as_int(fields.get("level"))
    if not 0 <= level <= 3:
        out.append(("log", "proximity level %d unknown" % level))
        return
    before = c.proximity
    c.proximity = level
    if level > before and level in _PROXIMITY_HAPTIC:
        out.append(("haptic", _PROXIMITY_HAPTIC[level]))
        if level == 1:
            # Uncertain: the centre's fix of the wearer is stale. A fresh one settles it.
            positioning.locate_now(c, 0, now, out)
    if level:
        c._due["proximity_end"] = c._at(now, "proximity_hold_s")
    else:
        c._due.pop("proximity_end", None)
    if level != before:
        c._persist(out)
        if bool(level) != bool(before) or (level >= 2) != (before >= 2):
            positioning.replan(c, now, out)             # also: warning ends any backoff


def t_proximity_end(c, now, out):
    if c.proximity:
        out.append(("log", "proximity lapsed without refresh"))
        c.proximity = 0
        c._persist(out)
        positioning.replan(c, now, out)
