"""manifest.py freezes exactly the device files `vigil deploy` puts in /lib (not main.py and
boot.py, which the board runs from its filesystem), in MicroPython's manifest language."""
from pathlib import Path

from host.deploy import device_files

REPO = Path(__file__).resolve().parent.parent


def _frozen():
    calls = []
    env = {"include": lambda path, **kw: calls.append(("include", path)),
           "package": lambda name, files=None, base_path=".", opt=None:
               calls.append(("package", name, tuple(files or ()), base_path)),
           "module": lambda name, base_path=".", opt=None: calls.append(("module", name))}
    exec(compile((REPO / "manifest.py").read_text(), "manifest.py", "exec"), env)
    return calls


def test_manifest_freezes_every_library_file_and_nothing_else():
    calls = _frozen()
    assert ("include", "$(PORT_DIR)/boards/manifest.py") in calls, "the port's own modules"
    frozen = set()
    for call in calls:
        if call[0] == "package":
            _, name, files, base = call
            for f in files:
                assert (REPO / base / name / f).is_file(), (name, f)
                frozen.add("/lib/%s/%s" % (name, f))
    deployed = {p for p in device_files(REPO) if p.startswith("/lib/")}
    assert frozen == deployed
    assert not {"/main.py", "/boot.py"} & frozen
