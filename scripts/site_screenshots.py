"""Build the documentation site and photograph its home and API pages with headless Chromium.

Usage: ``python scripts/site_screenshots.py [OUTDIR]`` (default ``build/site-shots``).
Needs Chromium on the PATH (Debian: ``apt-get install chromium``). A person looks at the
pictures before a release: the site is what a new user meets first.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = {"home": "", "api": "api/", "client": "client/"}


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "build" / "site-shots"
    out.mkdir(parents=True, exist_ok=True)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("site_screenshots: chromium is not on the PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as site:
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site],
            cwd=ROOT,
            env=env,
            check=True,
        )
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=site)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            for name, path in PAGES.items():
                url = f"http://127.0.0.1:{server.server_address[1]}/{path}"
                shot = out / f"{name}.png"
                subprocess.run(
                    [
                        browser,
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--hide-scrollbars",
                        "--window-size=1280,1600",
                        f"--screenshot={shot}",
                        url,
                    ],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
                print(shot)
        finally:
            server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
