"""--vigil-board=labgrid:PLACE — not built yet (issue 11): acquiring a place from a labgrid
coordinator and reaching its NetworkSerialPort resources (ser2net, rfc2217://) is the plan;
until then the option fails with one line instead of a traceback. A board served by
ser2net can already be used directly: --vigil-board=rfc2217:HOST:PORT."""
from hil.rig import RigError


def labgrid_dut(place, seed, centre_config):
    try:
        import labgrid  # noqa: F401
    except ImportError:
        raise RigError("--vigil-board=labgrid:%s: labgrid is not installed (pip install labgrid)"
                       % place) from None
    raise RigError("--vigil-board=labgrid:%s: labgrid places are not supported yet; reach the "
                   "exporter's port with --vigil-board=rfc2217:HOST:PORT" % place)
