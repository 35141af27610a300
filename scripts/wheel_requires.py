"""Check that carried wheels satisfy each other's requirements and the device image's packages.

``pip install --no-deps`` on the device checks nothing and there is no registry there, so a missing or
too-old dependency only shows as an ImportError in the middle of the device call. This reads every
wheel's ``Requires-Dist`` (markers evaluated for CPython 3.12 on Linux x86-64, extras ignored) and
checks each requirement against, in order: the carried wheels (name and version), the versions the
device's ``pip list`` showed (KINDS.md), and the image's package list (names only: those are reported
as "present, version unknown" so that device-check.sh can print them there).

Usage: python scripts/wheel_requires.py .whl [/work/.library/device/KINDS.md]   (exit 1 on a miss)
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "extra": "",
}


def wheel_meta(path: Path) -> tuple[str, Version, list[Requirement]]:
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode()
    fields = dict(re.findall(r"^(Name|Version): (.+)$", text, re.M))
    reqs = [Requirement(r) for r in re.findall(r"^Requires-Dist: (.+)$", text, re.M)]
    live = [r for r in reqs if r.marker is None or r.marker.evaluate(ENV)]
    return canonicalize_name(fields["Name"]), Version(fields["Version"]), live


def device_packages(kinds: Path) -> tuple[dict[str, Version], set[str]]:
    """Versions from the 'pip list' row, and all names of the 'Python packages already there' list."""
    text = kinds.read_text()
    versions: dict[str, Version] = {}
    row = re.search(r"filtered by the names it asked for: (.+?) \|", text)
    if row:
        for name, ver in re.findall(r"([A-Za-z0-9_.-]+) ([0-9][^,\s]*)", row.group(1)):
            versions[canonicalize_name(name)] = Version(ver)
    names: set[str] = set()
    listing = re.search(r"Packages: (.+?)\.\s*$", text, re.M | re.S)
    if listing:
        names = {canonicalize_name(n.strip()) for n in listing.group(1).split(",")}
    return versions, names


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    kinds = Path(argv[1] if len(argv) > 1 else "/work/.library/device/KINDS.md")
    versions, names = device_packages(kinds)
    wheels = {}
    for w in sorted(folder.glob("*.whl")):
        name, ver, reqs = wheel_meta(w)
        if name in wheels:
            print(f"TWO VERSIONS of {name}: {wheels[name][0]} and {ver} (pip stops on that)")
            return 1
        wheels[name] = (ver, reqs)
    bad = 0
    for name, (ver, reqs) in wheels.items():
        for r in reqs:
            dep = canonicalize_name(r.name)
            if dep in wheels:
                ok, where = wheels[dep][0] in r.specifier, f"carried {wheels[dep][0]}"
            elif dep in versions:
                ok, where = versions[dep] in r.specifier, f"device {versions[dep]}"
            elif dep in names:
                ok, where = True, "device, version unknown"
            else:
                ok, where = False, "MISSING"
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} {name} {ver}: {r} -> {where}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
