"""AMI wire parser: bytes in, frames out, no I/O (in the style of h11).

Framing rules, as Asterisk 22 sends them (see tests/fixtures/asterisk):

* the stream opens with a one-line banner ``Asterisk Call Manager/11.0.0`` that
  is *not* followed by a blank line;
* every other message is ``Name: value`` lines ended by an empty line. Asterisk
  ends lines in CRLF; a peer that ends them in a bare LF (a hand-written test
  server, netcat) is understood too. The first line end of the stream decides
  which, once: in a CRLF stream a lone LF is data (a channel variable can hold
  one), so a value ending in ``\\n`` cannot cut a frame in two;
* ``Command`` output in Asterisk 22 is ordinary repeated ``Output:`` headers; the
  pre-13 ``Response: Follows`` form whose body ends in ``--END COMMAND--`` is
  still understood so an old PBX cannot desynchronise us.

Speed. A busy PBX sends thousands of events a second, two thirds of them
VarSet, and nearly all of them repeat a handful of header layouts. The parser
therefore learns each layout ("shape") the first time it parses a frame of it
carefully, and after that splits a whole frame into alternating names and
values with two C calls per block and one ``str.split`` per frame, then builds
the dict from the shape's cached (pre-hashed) names. That path is only taken
when it provably gives the careful result; see :meth:`AMIParser._parse_crlf`.
The receive buffer is compacted once per feed and the search for a frame end
resumes where it stopped, so the work is O(bytes read).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AMIProtocolError
from .frame import Frame, FrameKind

DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
_BANNER_PREFIX = "Asterisk Call Manager"
_FOLLOWS = b"Response: Follows"
_FOLLOWS_END = b"--END COMMAND--"
# At most this many learnt header layouts; a stream that keeps inventing new
# ones only loses the fast path, never memory.
_MAX_SHAPES = 512


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that could not be understood and was skipped.

    Asterisk does not escape header values, so an odd frame now and then is
    normal; it is counted and reported, never fatal.
    """

    reason: str
    size: int


@dataclass(frozen=True, slots=True)
class _Shape:
    """A learnt header layout: names in order, and where kind/name/ActionID sit."""

    names: tuple[str, ...]
    tokens: int  # 2 * len(names): name and value tokens of a frame of this shape
    kind: FrameKind
    name_at: int  # token index of the value that names the frame
    action_id_at: int  # token index of the ActionID value, or -1


def _shape_key(names: list[str] | tuple[str, ...]) -> str:
    """What ``"".join(tokens[0::2])`` is for a frame of this layout (see _parse_crlf)."""
    return "\x00\n".join(names) + "\x00"


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
        # Where the search for the next frame end resumes; bytes before it are
        # known not to hold one, so byte-by-byte feeding stays linear.
        self._scan_from = 0
        # Inside an unfinished legacy Follows body: where the search for
        # --END COMMAND-- resumes (-1: not inside one).
        self._marker_from = -1
        self._expect_banner = expect_banner
        self._crlf: bool | None = None  # line ends, decided by the first one seen
        self._terminator = b"\r\n\r\n"
        self._shapes: dict[str, _Shape] = {}
        self._bad: list[BadFrame] = []
        self.frames_parsed = 0
        self.bad_frames = 0
        #: Diagnostics: bytes examined looking for frame ends, and how often the
        #: buffer was compacted. Both grow linearly with the input.
        self.bytes_scanned = 0
        self.compactions = 0

    # -- public API ---------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        if not data:
            return []
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        start = 0
        if self._crlf is None:
            newline = buf.find(b"\n")
            if newline < 0:
                self._check_pending(len(buf))
                return frames
            self._crlf = newline > 0 and buf[newline - 1] == 0x0D
            self._terminator = b"\r\n\r\n" if self._crlf else b"\n\n"
            if self._expect_banner:
                self._expect_banner = False
                line = buf[:newline].decode("utf-8", "replace").rstrip("\r")
                if line.startswith(_BANNER_PREFIX):
                    frames.append(Frame.make("banner", line))
                    start = newline + 1
            self._scan_from = start

        end, legacy = self._complete_end(start)
        if end > start:
            with memoryview(buf) as view:
                block = bytes(view[start:end])  # one copy, not two
            if not self._crlf:
                self._parse_careful(block, b"\n\n", "\n", legacy, frames)
            elif legacy:
                self._parse_careful(block, b"\r\n\r\n", "\r\n", True, frames)
            else:
                self._parse_crlf(block, frames)
            start = end
        if start:
            del buf[:start]
            self.compactions += 1
            self._scan_from = max(0, self._scan_from - start)
            if self._marker_from >= 0:
                self._marker_from = max(0, self._marker_from - start)
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
            self._buf = bytearray()  # a new object: the big one is freed now
            self._scan_from = 0
            self._marker_from = -1
            raise AMIProtocolError(
                f"AMI frame larger than {self.max_frame_size} bytes without an end; framing lost"
            )

    def _complete_end(self, start: int) -> tuple[int, bool]:
        """(offset just past the last complete frame, or ``start``; legacy body seen)."""
        buf = self._buf
        term = self._terminator
        if self._marker_from >= 0:
            # A legacy Follows body starts at `start`: nothing can end before
            # its --END COMMAND-- line, so look only for that.
            marker = buf.find(_FOLLOWS_END, self._marker_from)
            self.bytes_scanned += len(buf) - self._marker_from
            if marker < 0:
                self._marker_from = max(start, len(buf) - len(_FOLLOWS_END) + 1)
                return start, True
            self._marker_from = -1
            self._scan_from = marker
        # Look back so a terminator split across feeds is found.
        scan_from = max(start, self._scan_from - len(term) + 1)
        self.bytes_scanned += len(buf) - scan_from
        self._scan_from = len(buf)
        pos = buf.rfind(term, scan_from)
        if pos < 0:
            return start, False
        end = pos + len(term)
        if buf.find(_FOLLOWS, start, end) < 0:
            return end, False
        return self._follows_aware_end(start, end), True

    def _follows_aware_end(self, start: int, end: int) -> int:
        """Frame end when legacy ``Response: Follows`` bodies may hold blank lines."""
        buf = self._buf
        term = self._terminator
        pos = start
        while pos < end:
            frame_end = buf.find(term, pos)
            if frame_end < 0 or frame_end + len(term) > end:
                break
            frame_end += len(term)
            if buf.startswith(_FOLLOWS, pos):
                marker = buf.find(_FOLLOWS_END, pos)
                if marker < 0:
                    # Body not complete: wait for its end marker from here on.
                    self._marker_from = max(pos, len(buf) - len(_FOLLOWS_END) + 1)
                    return pos
                after = buf.find(term, marker)
                if after < 0:
                    self._scan_from = marker
                    return pos
                frame_end = after + len(term)
            pos = frame_end
        if pos < end:
            self._scan_from = pos  # re-scan the unfinished part on the next feed
        return pos

    # -- frames -------------------------------------------------------------

    def _parse_crlf(self, block: bytes, out: list[Frame]) -> None:
        """Parse complete CRLF frames, by learnt shape when that is provably exact.

        Every ``": "`` in the block becomes ``"\\0\\r"`` (same length, so offsets
        do not move) and each frame is split on ``"\\r"``: a frame whose lines are
        all ``Name: value`` gives tokens name+NUL, value, LF+name+NUL, value...
        A frame is built from a learnt shape only if (a) the block holds no NUL
        of its own, (b) its even tokens joined equal the shape's key, (c) it has
        exactly the shape's number of tokens and (d) no value token holds a NUL.
        A NUL can only sit at the end of a token, right before an inserted
        ``"\\r"``; so by (b)-(d) the inserted separators are exactly the ones
        after the shape's names, every other ``"\\r"`` is followed by the LF
        that starts the next name token (a CRLF line end), and the frame's lines
        are exactly the shape's names with these values: what the careful path
        gives. A frame cut at a ``"\\0\\r\\n\\r\\n"`` (a value ending in
        ``": \\n"``) fails (d) or ends in a NUL, and then the whole block is
        parsed again the careful way.
        """
        if b"\x00" in block or len(block) > self.max_frame_size:
            self._parse_careful(block, b"\r\n\r\n", "\r\n", False, out)
            return
        marked = block.replace(b": ", b"\x00\r")
        raws = marked.split(b"\r\n\r\n")
        if raws.pop():
            # The block's last terminator was swallowed by a "\0\r" (a value
            # ending in ": \n"): the split above is not the real framing.
            self._parse_careful(block, b"\r\n\r\n", "\r\n", False, out)
            return
        get_shape = self._shapes.get
        join = "".join
        frame_cls = Frame
        frames: list[Frame] = []
        bad: list[BadFrame] = []
        for raw in raws:
            tokens = raw.decode("utf-8", "replace").split("\r")
            shape = get_shape(join(tokens[0::2]))
            if shape is not None and len(tokens) == shape.tokens:
                values = tokens[1::2]
                if "\x00" not in join(values):
                    frame = frame_cls(zip(shape.names, values, strict=True))
                    frame.kind = shape.kind
                    frame.name = tokens[shape.name_at]
                    at = shape.action_id_at
                    frame.action_id = tokens[at] if at >= 0 else None
                    frames.append(frame)
                    continue
            if not raw.strip(b"\r\n"):
                continue  # extra blank lines between frames
            if raw[-1] == 0:
                # Cut at a "\0\r\n\r\n" that was a ": \n\r\n": the split did
                # not follow the real frame ends. Start again, carefully.
                self._parse_careful(block, b"\r\n\r\n", "\r\n", False, out)
                return
            text = raw.replace(b"\x00\r", b": ").decode("utf-8", "replace")
            frame = self._frame(text.split("\r\n"), False, False, len(raw), bad)
            if frame is not None:
                frames.append(frame)
                self._learn(frame)
        out += frames
        if bad:
            self._bad += bad
            self.bad_frames += len(bad)

    def _learn(self, frame: Frame) -> None:
        if getattr(frame, "_repeated", None) is not None or frame.kind == "banner":
            return
        names = tuple(frame)
        name_key = {"event": "Event", "response": "Response", "action": "Action"}[frame.kind]
        if name_key not in names:
            return  # classified through a differently-cased name: stay careful
        action_id_at = -1
        if "ActionID" in names:
            action_id_at = 2 * names.index("ActionID") + 1
        elif frame.action_id is not None:
            return
        if len(self._shapes) >= _MAX_SHAPES:
            self._shapes.clear()
        self._shapes[_shape_key(names)] = _Shape(
            names=names,
            tokens=2 * len(names),
            kind=frame.kind,
            name_at=2 * names.index(name_key) + 1,
            action_id_at=action_id_at,
        )

    def _parse_careful(
        self, block: bytes, term: bytes, eol: str, legacy: bool, out: list[Frame]
    ) -> None:
        """One frame at a time, line by line: the reference behaviour."""
        max_size = self.max_frame_size
        bad: list[BadFrame] = []
        for raw in _split_legacy(block, term) if legacy else block.split(term):
            if not raw.strip(b"\r\n"):
                continue
            if len(raw) > max_size:
                bad.append(BadFrame(f"frame of {len(raw)} bytes exceeds the bound", len(raw)))
                continue
            if b"\x00" in raw:
                bad.append(BadFrame("NUL byte in frame", len(raw)))
                continue
            text = raw.decode("utf-8", "replace")
            follows = legacy and raw.startswith(_FOLLOWS)
            frame = self._frame(text.split(eol), follows, eol == "\n", len(raw), bad)
            if frame is not None:
                out.append(frame)
                if eol == "\r\n" and not follows:
                    self._learn(frame)
        self._bad += bad
        self.bad_frames += len(bad)

    @staticmethod
    def _frame(
        lines: list[str], follows: bool, strip_cr: bool, size: int, bad: list[BadFrame]
    ) -> Frame | None:
        headers: dict[str, str] = {}
        repeated: dict[str, list[str]] | None = None
        output: list[str] = []
        for line in lines:
            if strip_cr and line.endswith("\r"):
                line = line[:-1]  # a bare-LF stream that still sent a CRLF here
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                if follows:
                    if line != "--END COMMAND--":
                        output.append(line)
                    continue
                bad.append(BadFrame(f"header line without a name: {line[:40]!r}", size))
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
            bad.append(BadFrame("frame without Event, Response or Action header", size))
            return None
        kind, name = kind_name
        action_id = headers.get("ActionID")
        if action_id is None:
            action_id = next((v for k, v in headers.items() if k.lower() == "actionid"), None)
        return Frame.make(kind, name, headers, repeated, action_id)


def _split_legacy(block: bytes, term: bytes) -> list[bytes]:
    """Split a block into frames, keeping a legacy Follows body (with blank lines) whole."""
    chunks: list[bytes] = []
    pos = 0
    length = len(block)
    while pos < length:
        if block.startswith(_FOLLOWS, pos):
            marker = block.find(_FOLLOWS_END, pos)
            end = block.find(term, marker) if marker >= 0 else -1
        else:
            end = block.find(term, pos)
        if end < 0:
            chunks.append(block[pos:])
            break
        chunks.append(block[pos:end])
        pos = end + len(term)
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
