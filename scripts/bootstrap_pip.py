"""Install pip into the running interpreter (a venv made with `--without-pip`) from PyPI.

For Debian/Ubuntu without python3-venv (ensurepip is packaged apart there) and no root to
install it: only the standard library is used. The wheel is the newest pip release's
`py3-none-any` wheel, checked against the sha256 PyPI publishes for it; a wheel is a zip
that Python can run from, so pip installs itself from its own file (what get-pip.py does).
Honours https_proxy / HTTPS_PROXY (urllib); it asks pypi.org once, then pip itself uses your
pip configuration (index, mirrors) for everything else.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/pypi/pip/json"


def main() -> int:
    if sys.prefix == sys.base_prefix:
        print("bootstrap_pip.py: run it with a virtual environment's python", file=sys.stderr)
        return 2
    with urllib.request.urlopen(INDEX, timeout=60) as resp:
        release = json.load(resp)
    wheel = next((u for u in release["urls"] if u["filename"].endswith("-py3-none-any.whl")), None)
    if wheel is None:
        print(f"bootstrap_pip.py: no universal wheel in {INDEX}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / wheel["filename"]
        url = urllib.parse.urljoin(INDEX, wheel["url"])  # mirrors may answer relative URLs
        with urllib.request.urlopen(url, timeout=120) as resp:
            data = resp.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != wheel["digests"]["sha256"]:
            print(f"bootstrap_pip.py: sha256 mismatch for {url}", file=sys.stderr)
            return 1
        path.write_bytes(data)
        cmd = [sys.executable, f"{path}/pip", "install", "--no-cache-dir", "--quiet", str(path)]
        return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
