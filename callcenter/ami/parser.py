"""AMI wire parser: bytes in, frames out, no I/O (in the style of h11).

Framing rules, as Asterisk 22 sends them (see tests/fixtures/asterisk):

* the stream opens with a one-line banner ``Asterisk Call Manager/11.0.0`` that
  is *not* followed by a blank line;
* every other message is ``Name: value`` lines ended by an empty line; lines end
  in CRLF, but a bare LF is accepted too;
* ``Command`` output in Asterisk 22 is ordinary repeated ``Output:`` headers; the
  pre-13 ``Response: Follows`` form whose body ends in ``--END COMMAND--`` is
  still understood so an old PBX cannot desynchronise us.

Performance matters (a busy PBX sends thousands of events per second, two thirds
of them VarSet), so the parser decodes every complete frame of a feed in one
``bytes.decode`` (a UTF-8 sequence never contains CR or LF, so a cut at a blank
line is always on a character boundary) and builds each header dict with C-level
``str.split``; frames that do not fit the fast path fall back to a careful one.
The receive buffer is compacted once per feed and the search for a frame end
resumes where it stopped, so the work is O(bytes read).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat

from .errors import AMIProtocolError
from .frame import Frame, FrameKind

DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
_BANNER_PREFIX = "Asterisk Call Manager"
_FOLLOWS_END = b"--END COMMAND--"


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that could not be understood and was skipped.

    Asterisk does not escape header values, so an odd frame now and then is
    normal; it is counted and reported, never fatal.
    """

    reason: str
    size: int


class AMIParser:
    """Incremental AMI parser.

    ``feed(data)`` returns the frames completed by ``data``; incomplete input is
    kept for the next call. Frames that cannot be parsed are skipped and appear
    in :meth:`take_bad_frames`. A frame that grows beyond ``max_frame_size``
    without ending raises :class:`AMIProtocolError`: framing is lost and the
    connection has to be dropped.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        expect_banner: bool = True,
    ) -> None:
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        # Where the search for the next blank line resumes; bytes before it are
        # known not to hold one, so byte-by-byte feeding stays linear.
        self._scan_from = 0
        self._expect_banner = expect_banner
        self._bad: list[BadFrame] = []
        self.frames_parsed = 0
        self.bad_frames = 0

    # -- public API ---------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        if not data:
            return []
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        start = 0
        if self._expect_banner:
            newline = buf.find(b"\n")
            if newline < 0:
                self._check_pending(len(buf))
                return frames
            line = buf[:newline].decode("utf-8", "replace").rstrip("\r")
            if line.startswith(_BANNER_PREFIX):
                frames.append(Frame.make("banner", line))
                start = newline + 1
            self._expect_banner = False
            self._scan_from = start

        end = self._last_frame_end(start)
        if end > start:
            self._parse_block(buf, start, end, frames)
            start = end
        if start:
            del buf[:start]
            self._scan_from = max(0, self._scan_from - start)
        self._check_pending(len(buf))
        self.frames_parsed += len(frames)
        return frames

    def take_bad_frames(self) -> list[BadFrame]:
        """Frames skipped since the last call (for counting and logging)."""
        bad, self._bad = self._bad, []
        return bad

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    # -- framing ------------------------------------------------------------

    def _check_pending(self, pending: int) -> None:
        if pending > self.max_frame_size:
            self._buf.clear()
            self._scan_from = 0
            raise AMIProtocolError(
                f"AMI frame larger than {self.max_frame_size} bytes without an end; "
                "framing lost"
            )

    def _last_frame_end(self, start: int) -> int:
        """Offset just past the last blank line in the buffer, or ``start``."""
        buf = self._buf
        # Look back 3 bytes so a terminator split across feeds is found.
        scan_from = max(start, self._scan_from - 3)
        self._scan_from = len(buf)
        if buf.find(b"\n", scan_from) < 0:
            return start
        # The last "\n\r\n" or "\n\n" after scan_from; rfind keeps this linear.
        crlf = buf.rfind(b"\n\r\n", scan_from)
        lf = buf.rfind(b"\n\n", scan_from)
        end = max(crlf + 3 if crlf >= 0 else -1, lf + 2 if lf >= 0 else -1)
        if end < 0:
            return start
        if buf.find(b"Response: Follows", start, end) >= 0:
            return self._follows_aware_end(start, end)
        return end

    def _follows_aware_end(self, start: int, end: int) -> int:
        """Frame end when legacy ``Response: Follows`` bodies may hold blank lines."""
        buf = self._buf
        pos = start
        last = start
        while pos < end:
            frame_end = self._next_frame_end(pos)
            if frame_end < 0 or frame_end > end:
                break
            if buf.startswith(b"Response: Follows", pos):
                marker = buf.find(_FOLLOWS_END, pos)
                if marker < 0:
                    break  # body not complete yet; wait for more bytes
                frame_end = self._next_frame_end(marker)
                if frame_end < 0:
                    break
            last = pos = frame_end
        if last < end:
            # Re-scan the unfinished part on the next feed.
            self._scan_from = last
        return last

    def _next_frame_end(self, pos: int) -> int:
        buf = self._buf
        crlf = buf.find(b"\n\r\n", pos)
        lf = buf.find(b"\n\n", pos)
        candidates = [c + 3 for c in (crlf,) if c >= 0] + [c + 2 for c in (lf,) if c >= 0]
        return min(candidates) if candidates else -1

    # -- frames -------------------------------------------------------------

    def _parse_block(self, buf: bytearray, start: int, end: int, out: list[Frame]) -> None:
        block = bytes(buf[start:end])
        max_size = self.max_frame_size
        make = _fast_frame
        if b"\n\n" not in block and b"Response: Follows" not in block:
            # The normal case: CRLF frames. Split bytes, decode each frame on its
            # own so a non-ASCII caller name does not widen a whole block.
            frame_cls = Frame
            get = Frame.dict_get
            split = str.split
            sep = repeat(_SEP)
            one = repeat(1)
            for raw in block.split(b"\r\n\r\n"):
                if not raw:
                    continue
                if len(raw) > max_size:
                    self._skip(f"frame of {len(raw)} bytes exceeds the bound", len(raw))
                    continue
                chunk = raw.decode("utf-8", "replace")
                lines = chunk.split("\r\n")
                # Inlined fast path of _fast_frame (this loop is the hot spot).
                try:
                    frame = frame_cls(map(split, lines, sep, one))
                except ValueError:
                    frame = None
                else:
                    name = get(frame, "Event")
                    if name is not None and len(frame) == len(lines):
                        frame.kind = "event"
                        frame.name = name
                        frame.action_id = get(frame, "ActionID")
                    else:
                        frame = make(lines)
                if frame is None:
                    frame = self._slow_frame(chunk)
                if frame is not None:
                    out.append(frame)
            return
        # Bare LF line ends, extra blank lines or a legacy Follows body.
        text = block.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        chunks = _split_follows(text) if "--END COMMAND--" in text else text.split("\n\n")
        for chunk in chunks:
            if not chunk.strip("\n"):
                continue
            if len(chunk) > max_size:
                self._skip(f"frame of {len(chunk)} characters exceeds the bound", len(chunk))
                continue
            frame = make(chunk.split("\n"))
            if frame is None:
                frame = self._slow_frame(chunk)
            if frame is not None:
                out.append(frame)

    def _skip(self, reason: str, size: int) -> None:
        self.bad_frames += 1
        self._bad.append(BadFrame(reason, size))

    def _slow_frame(self, chunk: str) -> Frame | None:
        headers: dict[str, str] = {}
        repeated: dict[str, list[str]] | None = None
        output: list[str] = []
        follows = chunk.startswith("Response: Follows")
        for line in chunk.split("\n"):
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                if follows:
                    if line != "--END COMMAND--":
                        output.append(line)
                    continue
                self._skip(f"header line without a colon: {line[:40]!r}", len(chunk))
                return None
            if value.startswith(" "):
                value = value[1:]
            if name in headers:
                if repeated is None:
                    repeated = {}
                repeated.setdefault(name, [headers[name]]).append(value)
            else:
                headers[name] = value
        if follows and output:
            # Legacy command output: expose it like Asterisk 22's Output: headers.
            values = (repeated or {}).get("Output") or (
                [headers["Output"]] if "Output" in headers else []
            )
            values = values + output
            headers.setdefault("Output", values[0])
            if len(values) > 1:
                repeated = repeated or {}
                repeated["Output"] = values
        kind_name = _classify(headers)
        if kind_name is None:
            self._skip("frame without Event, Response or Action header", len(chunk))
            return None
        kind, name = kind_name
        action_id = headers.get("ActionID")
        if action_id is None:
            action_id = next((v for k, v in headers.items() if k.lower() == "actionid"), None)
        return Frame.make(kind, name, headers, repeated, action_id)


def _split_follows(text: str) -> list[str]:
    """Split a block into frames, keeping a legacy Follows body (with blank lines) whole."""
    chunks: list[str] = []
    pos = 0
    length = len(text)
    while pos < length:
        if text.startswith("Response: Follows", pos):
            marker = text.find("--END COMMAND--", pos)
            end = text.find("\n\n", marker) if marker >= 0 else -1
        else:
            end = text.find("\n\n", pos)
        if end < 0:
            chunks.append(text[pos:])
            break
        chunks.append(text[pos:end])
        pos = end + 2
    return chunks


def _classify(headers: dict[str, str]) -> tuple[FrameKind, str] | None:
    # Event first: OriginateResponse is an event that also carries Response:.
    for key, kind in (("Event", "event"), ("Response", "response"), ("Action", "action")):
        value = headers.get(key)
        if value is not None:
            return kind, value  # type: ignore[return-value]
    lowered = {k.lower(): v for k, v in headers.items()}
    for key, kind in (("event", "event"), ("response", "response"), ("action", "action")):
        value = lowered.get(key)
        if value is not None:
            return kind, value  # type: ignore[return-value]
    return None


_SEP = ": "


def _fast_frame(lines: list[str]) -> Frame | None:
    """The common frame: unique ``Name: value`` lines with the canonical separator."""
    try:
        frame = Frame(map(str.split, lines, repeat(_SEP), repeat(1)))
    except ValueError:
        return None  # a line without ": ": take the careful path
    if len(frame) != len(lines):
        return None  # a repeated header: keep every value
    get = frame.dict_get
    name = get("Event")
    if name is not None:
        frame.kind = "event"
    else:
        name = get("Response")
        if name is not None and name != "Follows":
            frame.kind = "response"
        else:
            name = get("Action")
            if name is None:
                return None
            frame.kind = "action"
    frame.name = name
    frame.action_id = get("ActionID")
    return frame
