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
values with two C calls per block and one ``str.split`` per frame, finds the
shape by the frame's first value, and fills the dict with code compiled for
the shape (constant, pre-hashed names; no per-header loop). That path is only
taken when it provably gives the careful result; see
:meth:`AMIParser._parse_crlf`. Measured on the benchmark stream it costs about
34k CPU instructions a frame (callgrind), 15% less than the previous
shape-cache version and a quarter of panoramisk's.
When the compiled module ``_speedups`` is built (it is, by ``pip install``, unless
``CALLCENTER_NO_EXTENSIONS`` was set), it makes those common frames straight from the
bytes instead, and hands every frame it is not sure of to the careful path: the
aiohttp arrangement of a C parser with a pure Python fallback, both held by the tests
to one reference. ``CALLCENTER_NO_EXTENSIONS=1`` at run time also selects the pure
Python parser.
The receive buffer is compacted once per feed and the search for a frame end
resumes where it stopped, so the work is O(bytes read).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import AMIProtocolError
from .frame import Frame, FrameKind

try:
    from ._speedups import CrlfFrameParser as _CompiledCrlf
except ImportError:  # not built: the pure Python parser does all the work
    _CompiledCrlf = None

#: Whether AMIParser() uses the compiled fast path by default.
COMPILED_AVAILABLE = _CompiledCrlf is not None and not os.environ.get("CALLCENTER_NO_EXTENSIONS")

DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
_BANNER_PREFIX = "Asterisk Call Manager"
_FOLLOWS = b"Response: Follows"
_FOLLOWS_END = b"--END COMMAND--"
# At most this many learnt header layouts; a stream that keeps inventing new
# ones only loses the fast path, never memory.
_MAX_SHAPES = 512
# Frames a layout makes the generic way before code is compiled for it: about
# the cost of compiling, in careful parses, so the worst case stays bounded.
_COMPILE_AFTER = 16


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that could not be understood and was skipped.

    Asterisk does not escape header values, so an odd frame now and then is
    normal; it is counted and reported, never fatal.
    """

    reason: str
    size: int


class _Shape:
    """A learnt header layout: names in order, and where kind/name/ActionID sit.

    ``build(tokens)`` makes the frame. It starts as a generic method; once the
    layout has made ``_COMPILE_AFTER`` frames it is replaced by straight-line
    code made for the layout (see _frame_builder), so a stream that keeps
    inventing layouts never pays for compiling one it will not reuse.
    """

    __slots__ = ("names", "key", "tokens", "kind", "name_at", "action_id_at", "build", "uses")

    def __init__(
        self, names: tuple[str, ...], kind: FrameKind, name_at: int, action_id_at: int
    ) -> None:
        self.names = names
        #: The name tokens of a frame of this layout, joined (see _parse_crlf).
        self.key = _shape_key(names)
        self.tokens = 2 * len(names)  # name and value tokens of a frame of this layout
        self.kind = kind
        self.name_at = name_at  # token index of the value that names the frame
        self.action_id_at = action_id_at  # token index of the ActionID value, or -1
        self.build: Callable[[list[str]], Frame] = self._build_generic
        self.uses = 0

    def _build_generic(self, tokens: list[str]) -> Frame:
        self.uses += 1
        if self.uses >= _COMPILE_AFTER:
            self.build = _frame_builder(self.names, self.kind, self.name_at, self.action_id_at)
        frame = Frame(zip(self.names, tokens[1::2], strict=True))
        frame.kind = self.kind
        frame.name = tokens[self.name_at]
        at = self.action_id_at
        frame.action_id = tokens[at] if at >= 0 else None
        return frame


def _frame_builder(
    names: tuple[str, ...], kind: FrameKind, name_at: int, action_id_at: int
) -> Callable[[list[str]], Frame]:
    """A function making a frame of this layout from its tokens.

    Straight-line code storing each value under its name (a constant, its hash
    already known) is the cheapest way CPython has to fill a dict subclass:
    measured, a third less work than ``Frame(zip(names, values))``. The names
    go into the source through ``repr``, which for a ``str`` is always a
    literal evaluating to that same string, so no header name can inject code.
    """
    stores = "".join(f"    frame[{name!r}] = t[{2 * at + 1}]\n" for at, name in enumerate(names))
    action_id = f"t[{action_id_at}]" if action_id_at >= 0 else "None"
    source = (
        "def build(t):\n"
        "    frame = Frame()\n"
        f"{stores}"
        f"    frame.kind = {kind!r}\n"
        f"    frame.name = t[{name_at}]\n"
        f"    frame.action_id = {action_id}\n"
        "    return frame\n"
    )
    namespace: dict[str, Any] = {"Frame": Frame}
    exec(source, namespace)
    build: Callable[[list[str]], Frame] = namespace["build"]
    return build


def _shape_key(names: tuple[str, ...]) -> str:
    """What ``"".join(tokens[0::2])`` is for a frame of this layout (see _parse_crlf)."""
    return "\x00\n".join(names) + "\x00"


class AMIParser:
    """Incremental AMI parser.

    ``feed(data)`` returns the frames completed by ``data``; incomplete input is
    kept for the next call. Frames that cannot be parsed are skipped and appear
    in :meth:`take_bad_frames`. A frame that grows beyond ``max_frame_size``
    without ending raises :class:`AMIProtocolError`: framing is lost and the
    connection has to be dropped.

    ``compiled`` chooses the fast path: None uses the compiled one when it is
    available, True requires it (ImportError otherwise), False keeps to Python.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        expect_banner: bool = True,
        compiled: bool | None = None,
    ) -> None:
        self.max_frame_size = max_frame_size
        if compiled and _CompiledCrlf is None:
            raise ImportError("callcenter.ami._speedups is not built")
        use_compiled = COMPILED_AVAILABLE if compiled is None else compiled
        self._compiled = _CompiledCrlf(Frame) if use_compiled and _CompiledCrlf else None
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
        # The shape last confirmed for each first value (an event's name):
        # found with one short hash instead of joining and hashing every name.
        self._shape_by_first_value: dict[str, _Shape] = {}
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
            elif self._compiled is not None:
                # It gives each frame it is not sure of to the careful path.
                self._compiled.parse(block, frames, self.max_frame_size, self._careful_crlf_frame)
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
    def compiled(self) -> bool:
        """Whether this parser builds common frames with the compiled fast path."""
        return self._compiled is not None

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

        The shortcut is only tried in a block holding no NUL and no ``": \\n"``.
        Then a NUL only ever sits right before an inserted ``"\\r"``, so at the
        end of a token; and an inserted ``"\\r"`` is never followed by LF, so
        every ``"\\r\\n"`` of the marked block is one the PBX sent and the
        marked block splits into the block's own frames. A frame is built from a
        learnt shape only if (a) it has exactly the shape's 2n tokens and (b) its
        even tokens joined equal the shape's key ``N0\\0 LF N1\\0 ... LF Nn-1\\0``.
        By (b) and one NUL at most per token, the even tokens are exactly
        ``N0\\0``, ``LF N1\\0``...: each is followed by an inserted separator
        (the PBX sent ``"Nk: "``) and each later one starts with LF, so the
        separator before it is a CRLF the PBX sent. By (a) the last token is a
        value; no value holds a NUL (it would be followed by an inserted
        ``"\\r"``, so by another token starting with LF: a ``": \\n"``) and none
        holds a ``"\\r"``. So the frame is exactly ``N0: v0 CRLF ... Nn-1: vn-1``
        with no CRLF inside a value: the careful path's result. Decoding the
        marked instead of the sent bytes changes nothing else, as only ASCII
        bytes were swapped for ASCII bytes.

        A shape is found through the frame's first value (an event's name) with
        one short hash and confirmed by (a) and (b); only when that fails are
        all learnt layouts looked up by key.
        """
        if b"\x00" in block or b": \n" in block or len(block) > self.max_frame_size:
            self._parse_careful(block, b"\r\n\r\n", "\r\n", False, out)
            return
        raws = block.replace(b": ", b"\x00\r").split(b"\r\n\r\n")
        raws.pop()  # what follows the block's last terminator: nothing
        by_first = self._shape_by_first_value
        find_shape = self._find_shape
        join = "".join
        frames: list[Frame] = []
        append = frames.append
        for raw in raws:
            tokens = raw.decode("utf-8", "replace").split("\r")
            try:
                shape = by_first[tokens[1]]
            except (KeyError, IndexError):
                shape = find_shape(tokens)
            else:
                if len(tokens) != shape.tokens or join(tokens[0::2]) != shape.key:
                    shape = find_shape(tokens)
            if shape is None:
                frame = self._parse_marked(raw)
                if frame is not None:
                    append(frame)
                continue
            append(shape.build(tokens))
        out += frames

    def _careful_crlf_frame(self, raw: bytes, out: list[Frame]) -> None:
        self._parse_careful(raw, b"\r\n\r\n", "\r\n", False, out)

    def _find_shape(self, tokens: list[str]) -> _Shape | None:
        """The learnt shape of a frame split into ``tokens``, or None."""
        if len(tokens) < 2:
            return None
        shape = self._shapes.get("".join(tokens[0::2]))
        if shape is None or len(tokens) != shape.tokens:
            return None
        by_first = self._shape_by_first_value
        if len(by_first) >= _MAX_SHAPES:
            by_first.clear()
        by_first[tokens[1]] = shape
        return shape

    def _parse_marked(self, raw: bytes) -> Frame | None:
        """One frame of a marked block the careful way (and learn its shape)."""
        if not raw.strip(b"\r\n"):
            return None  # extra blank lines between frames
        bad: list[BadFrame] = []
        text = raw.replace(b"\x00\r", b": ").decode("utf-8", "replace")
        frame = self._frame(text.split("\r\n"), False, False, len(raw), bad)
        if frame is not None:
            self._learn(frame)
        if bad:
            self._bad += bad
            self.bad_frames += len(bad)
        return frame

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
        key = _shape_key(names)
        if key in self._shapes:
            return  # known already (a careful block): keep its compiled builder
        if len(self._shapes) >= _MAX_SHAPES:
            self._shapes.clear()
        self._shapes[key] = _Shape(names, frame.kind, 2 * names.index(name_key) + 1, action_id_at)

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
                if eol == "\r\n" and not follows and self._compiled is None:
                    self._learn(frame)  # the compiled fast path learns no layouts
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
