"""The README's test command sets up a fresh machine by itself: `make test` installs the
Debian packages the suite needs before it runs pytest, not only CI's script."""

import subprocess
from pathlib import Path

from tests.infra_inventory.test_dashboard import CHROMIUM

ROOT = Path(__file__).resolve().parents[1]


def make_dry_run(target: str) -> list[str]:
    result = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_make_test_installs_system_packages_before_pytest():
    commands = make_dry_run("test")

    installs = [i for i, c in enumerate(commands) if "scripts/system_packages.sh" in c]
    runs = [i for i, c in enumerate(commands) if "-m pytest" in c]
    assert installs and runs and installs[0] < runs[0], commands


def test_the_browser_the_suite_drives_comes_from_a_listed_package():
    listed = {line.strip() for line in (ROOT / "scripts/system-packages.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}

    owner = subprocess.run(["dpkg", "-S", str(Path(CHROMIUM).resolve())], capture_output=True, text=True)

    assert owner.returncode == 0, f"{CHROMIUM} belongs to no Debian package: {owner.stderr}"
    assert owner.stdout.split(":")[0] in listed


def test_ci_runs_exactly_the_readme_test_command():
    script = (ROOT / ".ci/run").read_text()

    assert "make test" in script and "apt-get" not in script
