# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled fast path of the AMI parser, with parser.py's pure Python as its fallback.

The aiohttp way (``_http_parser.pyx`` beside ``http_parser.py``): the parser's framing,
its careful line-by-line reference path and every odd case stay in Python; this module
only builds the common frame, ``Name: value`` lines with plain ASCII names, straight
from the bytes. Any frame it is not sure about (no colon, a repeated header, a NUL, a
name with a space or non-ASCII byte, a name that differs from Event, Response, Action or
ActionID only in case, no Event/Response/Action at all, oversized) goes whole to the
careful path, so both give the same frames; tests hold them to the same reference.

Why the bytes can be cut before decoding: the careful path decodes a frame as UTF-8
with errors="replace" and then splits on CRLF and ":". Those are ASCII bytes, which
never sit inside a multi-byte sequence and which the decoder never swallows into a
replaced one, so decoding each value's bytes alone gives the same text.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem, PyDict_Size
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint32_t
from libc.string cimport memchr, memcmp

import sys

# Header names seen, by a hash of their bytes: a frame's names become the same interned
# str objects (hash already known) without a bytes object or a dict lookup per header.
# A collision only replaces the slot; the table never grows.
cdef enum:
    NAME_SLOTS = 1024

cdef str EVENT = "Event"
cdef str RESPONSE = "Response"
cdef str ACTION = "Action"
cdef str ACTION_ID = "ActionID"
cdef str KIND_EVENT = "event"
cdef str KIND_RESPONSE = "response"
cdef str KIND_ACTION = "action"
cdef frozenset CLASSIFYING = frozenset(("event", "response", "action", "actionid"))
cdef frozenset EXACT = frozenset((EVENT, RESPONSE, ACTION, ACTION_ID))


cdef inline Py_ssize_t find_crlf(const char* buf, Py_ssize_t pos, Py_ssize_t end):
    """Offset of the next CRLF in [pos, end), or end. A lone CR is data."""
    cdef const char* hit
    while pos < end:
        hit = <const char*>memchr(buf + pos, b'\r', end - pos)
        if hit == NULL:
            return end
        pos = hit - buf
        if pos + 1 < end and buf[pos + 1] == b'\n':
            return pos
        pos += 1
    return end


cdef inline Py_ssize_t find_frame_end(const char* buf, Py_ssize_t pos, Py_ssize_t size):
    """Offset of the next CRLF CRLF at or after pos, or -1 (what bytes.split finds)."""
    cdef const char* hit
    while pos + 4 <= size:
        hit = <const char*>memchr(buf + pos, b'\r', size - pos - 3)
        if hit == NULL:
            return -1
        pos = hit - buf
        if buf[pos + 1] == b'\n' and buf[pos + 2] == b'\r' and buf[pos + 3] == b'\n':
            return pos
        pos += 1
    return -1


cdef class CrlfFrameParser:
    """Builds the frames of a block of complete CRLF frames; one per AMIParser."""

    cdef list _raw_names   # bytes of the name in each slot, or None
    cdef list _names       # the interned str of that name
    cdef unsigned char _classifying_variant[NAME_SLOTS]
    cdef object _frame_type

    def __cinit__(self, frame_type):
        self._frame_type = frame_type
        self._raw_names = [None] * NAME_SLOTS
        self._names = [None] * NAME_SLOTS

    def parse(self, bytes block, list out, Py_ssize_t max_frame_size, careful):
        """Append the frames of ``block`` to ``out`` in order.

        ``careful(raw, out)`` parses one frame the reference way and appends what it
        makes (or records why it is bad); it gets every frame this path declines.
        """
        cdef const char* buf = PyBytes_AS_STRING(block)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(block)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t end
        while pos < size:
            end = find_frame_end(buf, pos, size)
            if end < 0:
                careful(block[pos:], out)  # not sent by feed(): it cuts at a terminator
                return
            if end > pos:
                frame = self._frame(buf, pos, end, max_frame_size)
                if frame is None:
                    careful(block[pos:end], out)
                else:
                    out.append(frame)
            pos = end + 4

    cdef object _frame(self, const char* buf, Py_ssize_t start, Py_ssize_t end,
                       Py_ssize_t max_frame_size):
        cdef Py_ssize_t line = start
        cdef Py_ssize_t line_end, colon, value_at, slot
        cdef Py_ssize_t count = 0
        cdef unsigned char c
        cdef PyObject* found
        if end - start > max_frame_size or memchr(buf + start, 0, end - start) != NULL:
            return None
        frame = self._frame_type()
        while True:
            line_end = find_crlf(buf, line, end)
            colon = line
            while colon < line_end:
                c = <unsigned char>buf[colon]
                if c == b':':
                    break
                if c < 0x21 or c > 0x7E:
                    return None  # a space, a control or a non-ASCII byte in the name
                colon += 1
            if colon == line_end or colon == line:
                return None  # no colon, or no name
            slot = self._name_slot(buf + line, colon - line)
            if self._classifying_variant[slot]:
                return None
            value_at = colon + 1
            if value_at < line_end and buf[value_at] == b' ':
                value_at += 1
            value = PyUnicode_DecodeUTF8(buf + value_at, line_end - value_at, "replace")
            PyDict_SetItem(frame, self._names[slot], value)
            count += 1
            if PyDict_Size(frame) != count:
                return None  # a repeated header: the careful path keeps every value
            if line_end >= end:
                break
            line = line_end + 2

        # Event first: OriginateResponse is an event that also carries Response:.
        found = PyDict_GetItem(frame, EVENT)
        if found != NULL:
            frame.kind = KIND_EVENT
        else:
            found = PyDict_GetItem(frame, RESPONSE)
            if found != NULL:
                frame.kind = KIND_RESPONSE
            else:
                found = PyDict_GetItem(frame, ACTION)
                if found == NULL:
                    return None
                frame.kind = KIND_ACTION
        frame.name = <object>found
        found = PyDict_GetItem(frame, ACTION_ID)
        frame.action_id = <object>found if found != NULL else None
        return frame

    cdef Py_ssize_t _name_slot(self, const char* name, Py_ssize_t length):
        cdef uint32_t hash_ = 2166136261u  # FNV-1a
        cdef Py_ssize_t i
        for i in range(length):
            hash_ = (hash_ ^ <unsigned char>name[i]) * 16777619u
        cdef Py_ssize_t slot = hash_ & (NAME_SLOTS - 1)
        cdef object known = self._raw_names[slot]
        if known is not None and PyBytes_GET_SIZE(known) == length and memcmp(
            PyBytes_AS_STRING(known), name, length
        ) == 0:
            return slot
        raw = PyBytes_FromStringAndSize(name, length)
        text = sys.intern(raw.decode("ascii"))
        self._raw_names[slot] = raw
        self._names[slot] = text
        # "EVENT:" or "actionId:" classify a frame only through the careful path's
        # case-insensitive fallback: leave such frames to it.
        self._classifying_variant[slot] = text.lower() in CLASSIFYING and text not in EXACT
        return slot
