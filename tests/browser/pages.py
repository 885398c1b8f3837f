"""Test helpers: a DOM tree from html.parser, and PNG pixels from zlib/struct (stdlib only)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "col", "source", "wbr", "area", "base"})


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> list[Node]:
        out = [self]
        for c in self.children:
            if isinstance(c, Node):
                out.extend(c.walk())
        return out

    def find(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Descendants (self included) with that tag and attributes (class matches one of the classes)."""
        found = []
        for n in self.walk():
            if tag is not None and n.tag != tag:
                continue
            ok = True
            for k, v in attrs.items():
                key = k.rstrip("_").replace("_", "-")
                have = n.attrs.get(key)
                matched = v in have.split() if key == "class" and have is not None else have == v
                ok = ok and matched
            if ok:
                found.append(n)
        return found


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    b = _Builder()
    b.feed(html)
    b.close()
    return b.root


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) bytes of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace != 0 or colour not in (2, 6):
                raise ValueError(f"PNG depth {depth}, colour {colour}, interlace {interlace}")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if f == 0:
            pass
        elif f == 2:
            line = bytearray((x + b) & 255 for x, b in zip(line, prev, strict=True))
        else:
            _unfilter(f, line, prev, channels)
        rows.append(bytes(line))
        prev = line
    return width, height, _rgb(rows, channels)


def _unfilter(f: int, line: bytearray, prev: bytearray, channels: int) -> None:
    """PNG filters Sub (1), Average (3) and Paeth (4), in place."""
    if f not in (1, 3, 4):
        raise ValueError(f"PNG filter {f}")
    for i in range(len(line)):
        a = line[i - channels] if i >= channels else 0
        b = prev[i]
        if f == 1:
            line[i] = (line[i] + a) & 255
        elif f == 3:
            line[i] = (line[i] + (a + b) // 2) & 255
        else:
            c = prev[i - channels] if i >= channels else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 255


def _rgb(rows: list[bytes], channels: int) -> list[bytes]:
    if channels == 3:
        return rows
    return [b"".join(r[i : i + 3] for i in range(0, len(r), 4)) for r in rows]


def colour_counts(rows: list[bytes]) -> tuple[int, int]:
    """(pixels not white, pixels of the downtime red #c62828 within a small tolerance)."""
    other = red = 0
    for r in rows:
        for i in range(0, len(r), 3):
            px = r[i], r[i + 1], r[i + 2]
            if px != (255, 255, 255):
                other += 1
                if abs(px[0] - 0xC6) < 12 and abs(px[1] - 0x28) < 12 and abs(px[2] - 0x28) < 12:
                    red += 1
    return other, red
