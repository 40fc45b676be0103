"""Battery: the ADC through a divider, and the charger-sense pin.

    b = Battery(adc, charger_pin, divider=2)
    b.read() -> (battery_mv, battery_pct, charging)
"""
# Single-cell LiPo open-circuit voltage (mV) to charge (%), resting, room temperature: the
# (mV, %) points one after another in one tuple (not a tuple each).
_OCV = (3300, 0, 3500, 5, 3600, 10, 3680, 20, 3740, 30, 3790, 40, 3830, 50,
        3870, 60, 3920, 70, 3980, 80, 4060, 90, 4200, 100)


def percent(battery_mv):
    """Charge in % from the cell voltage, linear between table points, clamped 0..100."""
    if battery_mv <= _OCV[0]:
        return 0
    for i in range(2, len(_OCV), 2):
        mv = _OCV[i]
        if battery_mv <= mv:
            mv0, pct0, pct = _OCV[i - 2], _OCV[i - 1], _OCV[i + 1]
            return pct0 + (battery_mv - mv0) * (pct - pct0) // (mv - mv0)
    return 100


class Battery:
    def __init__(self, adc, charger_pin, divider=2):
        self.adc = adc
        self.charger_pin = charger_pin
        self.divider = divider

    def read(self):
        battery_mv = self.adc.read_uv() * self.divider // 1000
        charging = 1 if self.charger_pin.value() else 0
        return battery_mv, percent(battery_mv), charging
