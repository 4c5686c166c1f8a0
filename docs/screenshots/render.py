"""Render a posebus .glb in three.js with headless Chromium and save a PNG (the picture in docs/outputs.md).

    python docs/screenshots/render.py RESULTS_DIR/vid.track1.glb -o docs/screenshots/export.png

Needs Chromium (Debian: apt-get install chromium) and tests/js's packages (cd tests/js && npm ci).
The page (viewer.html) and three.js are served from the repository on a loopback port for the run only.
"""
from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-extensions", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--mute-audio", "--use-angle=swiftshader", "--enable-unsafe-swiftshader")


class Handler(SimpleHTTPRequestHandler):
    """The repository's files, and the model at /model.glb."""

    def __init__(self, *args, model: Path, **kwargs):
        self.model = model
        super().__init__(*args, directory=str(ROOT), **kwargs)

    def translate_path(self, path: str) -> str:
        return str(self.model) if path.split("?")[0] == "/model.glb" else super().translate_path(path)

    def log_message(self, *args) -> None:
        pass


def render(model: Path, output: Path, size: tuple[int, int] = (960, 540), moments: int = 6) -> Path:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
    if not (ROOT / "tests" / "js" / "node_modules" / "three").exists():
        raise FileNotFoundError("three.js is not installed: cd tests/js && npm ci")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, model=model.resolve()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/docs/screenshots/viewer.html?moments={moments}&width={size[0]}&height={size[1]}"
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--window-size={size[0]},{size[1]}",
                        "--virtual-time-budget=20000", f"--screenshot={output.resolve()}", url],
                       check=True, capture_output=True, timeout=120)
    finally:
        server.shutdown()
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a .glb written by outputs.gltf")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "screenshots" / "export.png")
    parser.add_argument("--moments", type=int, default=6, help="how many moments of the animation to draw")
    args = parser.parse_args(argv)
    print(render(args.model, args.output, moments=args.moments))
    return 0


if __name__ == "__main__":
    sys.exit(main())
