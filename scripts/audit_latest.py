"""Fallback dependency audit for networks where pip-audit's vulnerability services do not
answer (see scripts/audit): PyPI's project JSON (`/pypi/NAME/json`, which registry proxies
serve) lists the known vulnerabilities of a project's latest release. For every installed
distribution at its latest release, that list is exactly its own; the others are reported as
not audited, never as clean.

    .venv/bin/python scripts/audit_latest.py --json runs/audit-latest.json

Exit 0: every distribution audited, none vulnerable; 1: a vulnerability found; 2: some
distributions could not be audited (listed).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PYPI = "https://pypi.org/pypi/{name}/json"


def installed() -> dict[str, str]:
    """Installed distributions (name -> version), the editable project itself excluded."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "sparsegate":
            found[name] = dist.version
    return found


def check(client: httpx.Client, name: str, version: str) -> dict:
    try:
        response = client.get(PYPI.format(name=name), timeout=60)
    except httpx.HTTPError as error:
        return {"name": name, "version": version, "audited": False, "why": str(error)}
    if response.status_code != 200:
        return {"name": name, "version": version, "audited": False,
                "why": f"PyPI answered {response.status_code}"}
    project = response.json()
    latest = project["info"]["version"]
    if latest != version:
        return {"name": name, "version": version, "audited": False,
                "why": f"not the latest release ({latest}): PyPI lists only its vulnerabilities",
                "held_by": held_by(name, version, project)}
    vulns = [{"id": v.get("id"), "aliases": v.get("aliases"), "fixed_in": v.get("fixed_in"),
              "summary": (v.get("summary") or v.get("details") or "")[:200]}
             for v in project.get("vulnerabilities") or []]
    return {"name": name, "version": version, "audited": True, "vulnerabilities": vulns}


def held_by(name: str, version: str, project: dict) -> list[str]:
    """Why `name` is installed below its latest release: the installed distributions whose
    requirements exclude the latest release, and the Python versions the newer releases need.
    Empty when nothing here holds it back (it can simply be upgraded)."""
    latest = Version(project["info"]["version"])
    reasons = [f"{owner} requires {line}"
               for owner, line, requirement, extras in _requirements()
               if canonicalize_name(requirement.name) == canonicalize_name(name)
               and not requirement.specifier.contains(latest, prereleases=True)
               and (requirement.marker is None
                    or any(requirement.marker.evaluate({"extra": e}) for e in extras))]
    python = Version(platform.python_version())
    newest_here = max((Version(v) for v, files in project.get("releases", {}).items()
                       if _installable(v, files, python)), default=None)
    if newest_here is not None and newest_here < latest:
        reasons.append(f"{newest_here} is its newest release for Python {python} (later ones "
                       f"require Python {project['info'].get('requires_python')})")
    if name.lower() == "torch" and "+" in version:
        reasons.append("this machine's torch build (scripts/install pins "
                       "SPARSEGATE_TORCH_VERSION; pip here is capped below the latest)")
    return sorted(set(reasons))


@functools.cache
def _requirements() -> list[tuple[str, str, Requirement, list[str]]]:
    """Every installed distribution's requirements, parsed once: (owner "name version", the
    requirement as written and parsed, the owner's extras with "" for none)."""
    found = []
    for dist in importlib.metadata.distributions():
        extras = [""] + (dist.metadata.get_all("Provides-Extra") or [])
        owner = f"{dist.metadata['Name']} {dist.version}"
        found += [(owner, line, Requirement(line), extras) for line in dist.requires or []]
    return found


def _installable(version: str, files: list[dict], python: Version) -> bool:
    """A final, unyanked release with a file whose Requires-Python admits this Python."""
    try:
        if Version(version).is_prerelease:
            return False
    except InvalidVersion:
        return False
    return any(not f.get("yanked") and (not f.get("requires_python") or _admits(
        f["requires_python"], python)) for f in files)


def _admits(requires_python: str, python: Version) -> bool:
    try:
        return SpecifierSet(requires_python).contains(python, prereleases=True)
    except InvalidSpecifier:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("runs/audit-latest.json"))
    args = parser.parse_args(argv)
    packages = installed()
    with httpx.Client(follow_redirects=True) as client, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda item: check(client, *item), sorted(packages.items())))
    vulnerable = [r for r in results if r.get("vulnerabilities")]
    unaudited = [r for r in results if not r["audited"]]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"packages": len(results), "audited": len(results)
                                     - len(unaudited), "vulnerable": len(vulnerable),
                                     "results": results}, indent=1))
    for r in vulnerable:
        for v in r["vulnerabilities"]:
            print(f"{r['name']} {r['version']}: {v['id']} fixed in {v['fixed_in']}: "
                  f"{v['summary']}")
    for r in unaudited:
        print(f"not audited: {r['name']} {r['version']}: {r['why']}")
        for reason in r.get("held_by", []):
            print(f"    held: {reason}")
        if "held_by" in r and not r["held_by"]:
            print("    nothing installed holds it back: upgrade it")
    print(f"[audit] {len(results)} distributions: {len(results) - len(unaudited)} audited, "
          f"{len(vulnerable)} vulnerable, {len(unaudited)} not audited; wrote {args.json}")
    return 1 if vulnerable else 2 if unaudited else 0


if __name__ == "__main__":
    sys.exit(main())
