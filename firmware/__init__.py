"""The vigil victim device's firmware (docs/DESIGN in the repository)."""


def forget(module):
    """Drop `module` ("firmware.x" or "protocol.x") from the heap: it is freed once nothing
    else holds it, and imported again when next needed. For code the device runs rarely (at
    boot, for a CONFIG or a COMMAND): its heap goes back to the superloop."""
    import sys
    sys.modules.pop(module, None)
    package, name = module.split(".")
    parent = sys.modules[package]
    if hasattr(parent, name):
        delattr(parent, name)
