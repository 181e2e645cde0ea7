"""Print what the wheels of a wheelhouse require under some Python 3.11 other than the running one.

A wheelhouse resolved by one Python 3.11 lacks what a dependency needs only below or above its patch
release: ``redis`` requires ``async-timeout`` where ``python_full_version < "3.11.3"``, and Debian 12's
Python is 3.11.2, Ubuntu 22.04's 3.11.0. ``docker/wheelhouse.sh`` adds these until none is missing.

    python docker/marker_requirements.py WHEELHOUSE > more-requirements.txt
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip vendors it
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
    from pip._vendor.packaging.utils import canonicalize_name

PATCH_RELEASES = range(0, 30)
"""3.11.0 and every later patch release (3.11 receives security releases until 2027)."""


def wheel_metadata(wheel: Path) -> tuple[str, list[str]]:
    """The distribution name of a wheel and its ``Requires-Dist`` lines."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
    return canonicalize_name(headers["Name"]), headers.get_all("Requires-Dist") or []


def needed_elsewhere(wheelhouse: Path) -> list[str]:
    """Requirements that hold for some Python 3.11.x, are not extras, and no wheel in ``wheelhouse`` meets."""
    present: set[str] = set()
    wanted: dict[str, str] = {}
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name, requires = wheel_metadata(wheel)
        present.add(name)
        for line in requires:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            marker = requirement.marker
            if marker is None or "extra" in str(marker):
                continue
            releases = ({**default_environment(), "python_full_version": f"3.11.{p}"} for p in PATCH_RELEASES)
            if any(marker.evaluate(env) for env in releases):  # type: ignore[arg-type]
                wanted[canonicalize_name(requirement.name)] = f"{requirement.name}{requirement.specifier}"
    return [spec for name, spec in sorted(wanted.items()) if name not in present]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not Path(argv[1]).is_dir():
        print("usage: marker_requirements.py WHEELHOUSE", file=sys.stderr)
        return 2
    print("\n".join(needed_elsewhere(Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
