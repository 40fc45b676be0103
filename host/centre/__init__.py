"""The monitoring-centre emulator (sans-IO core in `centre.py`, CLI in `cli.py`)."""
from host.centre.centre import Centre, CentreConfig, Event
from host.centre.proximity import ProximityConfig

__all__ = ["Centre", "CentreConfig", "Event", "ProximityConfig"]
