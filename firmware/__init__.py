"""The vigil victim device's firmware (docs/DESIGN in the repository)."""


def forget(module):
    """Drop `module` ("firmware.x" or "protocol.x") from the heap: it is freed once nothing
    else holds it, and imported again when next needed. For code the device runs rarely (at
    boot, for a CONFIG or a COMMAND): its heap goes back to the superloop."""
    import sys
    if module not in sys.modules:       # the core calls this after every event: cheap then
        return
    del sys.modules[module]
    package, name = module.split(".")
    parent = sys.modules[package]
    if hasattr(parent, name):
        delattr(parent, name)
