"""Load a page in headless Chromium (Debian's chromium package) and read the DOM its scripts built."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_dom(url: str, budget_ms: int = 8000) -> str:
    """The DOM after the page's scripts ran, with every host but loopback unresolvable (offline)."""
    assert CHROMIUM, "chromium is not installed (scripts/setup.sh --dev installs it)"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    parent_ids: list[str] = field(default_factory=list)  # ids of enclosing elements, innermost last


class DomIndex(HTMLParser):
    """Every element with its attributes, text and enclosing ids; enough to check a rendered page."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "circle", "line", "polyline", "path", "rect"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs},
                          parent_ids=[e.attrs["id"] for e in self._open if "id" in e.attrs])
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def by_id(self, element_id: str) -> Element:
        return next(e for e in self.elements if e.attrs.get("id") == element_id)

    def inside(self, element_id: str, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag and element_id in e.parent_ids]
