"""Reading an arguments file (-A): its argument lines, their columns, and their count.

Lines end with ``\n``, ``\r\n`` or a lone ``\r`` (old Mac files); comments (``#``) and blank lines
are not argument lines. :func:`count_argument_lines` counts them at C speed (10 million lines in
well under a second); :func:`argument_lines` streams them, a block at a time.
"""

from __future__ import annotations

import re
from typing import IO, Callable, Dict, Iterator, List, Optional, Tuple


def _split_on(character: str) -> Callable[[str], List[str]]:
    def split(line: str) -> List[str]:
        return [field.strip() for field in line.split(character)]

    return split


_SPACES = re.compile(" +")
_TABS = re.compile("\t+")

SEPARATORS: Dict[str, Callable[[str], List[str]]] = {
    "space": _SPACES.split,
    "whitespace": str.split,
    "tab": _TABS.split,
    "comma": _split_on(","),
    "semicolon": _split_on(";"),
    "pipe": _split_on("|"),
    "colon": _split_on(":"),
}


def split_columns(line: str, separator: Optional[str]) -> List[str]:
    """The arguments of one (already stripped) line; no separator: the whole line is one."""
    if separator is None:
        return [line]
    return SEPARATORS[separator](line)


BLOCK = 1 << 18  # bytes read at a time: big enough for C-speed scans, small enough to stay flat
COUNT_NOTICE_BYTES = 256 << 20  # a file this big takes a second or more just to count: say so


def _line_blocks(handle: IO[bytes]) -> Iterator[List[bytes]]:
    """The lines of a binary file without their ends (``\n``, ``\r\n`` or a lone ``\r``), a
    block's worth at a time.

    Read in blocks and split at C speed; a file of CR-only lines (``a\rb\rc\r``) splits the
    same way instead of becoming one huge line.
    """
    carry = b""
    while True:
        block = handle.read(BLOCK)
        if not block:
            break
        data = carry + block
        held = b""
        if b"\r" in data:
            if data.endswith(b"\r"):  # maybe the first half of a \r\n that the next block completes
                data, held = data[:-1], b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        carry = lines.pop() + held
        yield lines
    if carry:  # the last line, without an end, or ended by a lone \r
        yield [carry[:-1] if carry.endswith(b"\r") else carry]


def argument_lines(path: str) -> Iterator[Tuple[int, str]]:
    """``(line number, stripped line)`` of every argument line; comments and blank lines skipped.

    Bytes that are not UTF-8 survive as surrogates and become the same bytes again in argv.
    """
    number = 0
    with open(path, "rb") as handle:
        for lines in _line_blocks(handle):
            for raw in lines:
                number += 1
                line = raw.decode("utf-8", "surrogateescape")
                if number == 1 and line.startswith("\ufeff"):
                    line = line[1:]  # a UTF-8 byte order mark is not part of the first argument
                line = line.strip()
                if line and not line.startswith("#"):
                    yield number, line


# What str.strip() strips (the characters for which str.isspace() is true), in UTF-8, without
# \n and \r (line ends); a test checks the list against str.isspace.
WHITESPACE = (
    "\t\x0b\x0c\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The same characters as bytes, grouped by their first byte (a class of single bytes first: one
# alternation per character would make the scan several times slower); a test checks it.
_SPACE = (
    b"(?:[\t\x0b\x0c\x1c-\x1f ]|\xc2[\x85\xa0]|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f"
    b"|\xe3\x80\x80)"
)
# A line that argument_lines skips: only whitespace, or a comment after it. Matched at the \n
# before it; the lookahead leaves the \n that ends it for the next line's match.
_SKIPPED_LINE = re.compile(b"\n" + _SPACE + b"*(?=[#\n])")
_BOM = b"\xef\xbb\xbf"


def count_argument_lines(path: str) -> int:
    """How many lines :func:`argument_lines` yields, found at C speed (newlines counted in big
    blocks, skipped lines found by one regular expression per block) instead of line by line."""
    count = 0
    carry = b""
    first = True
    with open(path, "rb") as handle:
        while True:
            block = handle.read(BLOCK)
            if not block:
                break
            data = carry + block
            if first and data.startswith(_BOM[: len(data)]) and len(data) < len(_BOM):
                carry = data  # too short to tell whether it is a byte order mark
                continue
            if first:
                first = False
                if data.startswith(_BOM):
                    data = data[len(_BOM):]
            held = b""
            if b"\r" in data:
                if data.endswith(b"\r"):
                    data, held = data[:-1], b"\r"
                data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            cut = data.rfind(b"\n") + 1
            carry = data[cut:] + held
            if cut:
                count += _count_complete(data[:cut])
    if first and carry.startswith(_BOM):
        carry = carry[len(_BOM):]
    if carry.endswith(b"\r"):
        carry = carry[:-1]
    if carry:
        count += _count_complete(carry.replace(b"\r", b"\n") + b"\n")
    return count


def _count_complete(lines: bytes) -> int:
    """The argument lines among ``lines`` (every one of them ended by \n)."""
    return lines.count(b"\n") - len(_SKIPPED_LINE.findall(b"\n" + lines))
