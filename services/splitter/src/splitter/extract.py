"""Streaming reader of GRO death extracts: whole-file checks and one fragment per record.

lxml's pull parser does all the XML work (well-formedness, namespaces, UTF-8); we feed it the
stream a piece at a time and drop every record element once it has ended, so memory stays
constant whatever the file size. Each record leaves as the exact bytes it had in the file: we
slice them out of the chunk we just fed, which costs a `bytes.find` instead of re-serialising
the element. Where the lexical layout is anything but plain (comments, CDATA, attributes on a
record) the slicer gives up for the rest of the file and `etree.tostring` takes over: slower,
always right.

Size is bounded while the file is read, not after: the parser is fed at most `FEED_BYTES` at a
time, and between two feeds we look at what it has built. A record that runs past
`MAX_RECORD_BYTES` stops being built (its finished children are freed as they come) and is
reported as an `OversizedRecord` when it ends; the records after it come out as usual. Content
at the root that is not a record and runs past the same limit refuses the file there and then.

Nothing here quotes the file in an error, its markup included (a file can name an element, a
namespace or an encoding after a person): a reason says what and where (line, column,
ordinal, size), names an element only by a name the GRO format defines, a namespace only when
it is one the format uses, and gives lxml's errors by category, never lxml's message.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from lxml import etree

from contracts.gro import NS_ADDR, NS_GRO, NS_PD, NS_PERSON

RECORD_TAG = f"{{{NS_GRO}}}DeathRegistration"
COUNT_TAG = f"{{{NS_GRO}}}RecordCount"
ROOT_TAG = f"{{{NS_GRO}}}DeathRegistrationGroup"
ANY_ROOT_TAG = "{*}DeathRegistrationGroup"

# The parser is fed at most this much between two looks at what it has built: the most a
# record (or anything else) can grow past a limit before we notice. Small enough that 64 KiB
# of empty elements builds a few MB at worst; large enough that the extra feeds cost nothing.
FEED_BYTES = 64 * 1024
# What is read at a time: one feed. A read then goes to the parser whole, not copied out a
# slice per feed; and it, and the slicing buffer it is added to, stay under glibc's mmap
# threshold (128 KiB), so their memory comes back from the heap. (At 1 MiB, each read was
# mapped fresh and faulted in page by page: about 0.7 us a record in the kernel, by perf.)
CHUNK_BYTES = FEED_BYTES
# A real record is about 1.5 KB; anything past this is not a record we can carry on a queue.
# The same limit bounds anything at the root that is not a record (a header, a stray element).
MAX_RECORD_BYTES = 256 * 1024
# How much of the start of a file is looked at before parsing (BOM, declaration, DOCTYPE, root).
HEAD_BYTES = 64 * 1024
# How far into a file its root element must have started: its start tag whole by this byte.
MAX_PROLOG_BYTES = 1 << 20

_NO_ROOT = "no DeathRegistrationGroup root element in the first MiB"

_HARDENED = {
    "resolve_entities": False,
    "load_dtd": False,
    "no_network": True,
    "huge_tree": False,
    "dtd_validation": False,
    "remove_comments": True,
    "remove_pis": True,
    "collect_ids": False,
}

_ERROR_NAMES = {
    value: name for name, value in vars(etree.ErrorTypes).items() if isinstance(value, int)
}
_ERROR_PHRASES = {
    "ERR_DOCUMENT_EMPTY": "the file is empty",
    "ERR_DOCUMENT_END": "there is content after the root element",
    "ERR_TAG_NOT_FINISHED": "the file ends inside an element (truncated?)",
    "ERR_TAG_NAME_MISMATCH": "an end tag does not match its start tag",
    "ERR_INVALID_CHAR": "the file holds a character XML does not allow",
    "ERR_INVALID_ENCODING": "the file is not valid UTF-8",
    "ERR_UNDECLARED_ENTITY": "the file refers to an entity (entities are not allowed)",
    "ERR_UNKNOWN_ENCODING": "the file declares an encoding that is not UTF-8",
    "ERR_UNSUPPORTED_ENCODING": "the file declares an encoding that is not UTF-8",
    "ERR_RESOURCE_LIMIT": "a text node or element exceeds the parser's size limit",
    "ERR_NAME_REQUIRED": "an element name is malformed",
    "ERR_GT_REQUIRED": "a tag is not closed",
    "ERR_LT_REQUIRED": "a '<' is missing",
    "NS_ERR_UNDEFINED_NAMESPACE": "a namespace prefix is used without being declared",
    "NS_ERR_QNAME": "an element or attribute name is not a valid qualified name",
    "NS_ERR_ATTRIBUTE_REDEFINED": "an attribute occurs twice on one element",
    "ERR_ATTRIBUTE_REDEFINED": "an attribute occurs twice on one element",
    "ERR_ATTRIBUTE_WITHOUT_VALUE": "an attribute has no value",
    "ERR_ATTRIBUTE_NOT_STARTED": "an attribute value is not quoted",
}
_DECLARED_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")
_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


# The names the GRO format defines (shared/reference/gro-death-extract.md), by namespace: a
# reason may name an element by one of these. Any other name came from the file, and is not
# repeated: a file can name an element after a person.
_AD_PD = "http://www.govtalk.gov.uk/people/AddressAndPersonalDetails"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_DEFINED: dict[str, frozenset[str]] = {
    NS_GRO: frozenset(
        {
            "DeathRegistrationGroup",
            "DeathRegistration",
            "RecordCount",
            "RegistrationID",
            "RecordLockedDateTime",
            "RecordUpdateDateTime",
            "RecordUpdateReason",
            "DeceasedName",
            "DeceasedAliasName",
            "DeceasedAliasNameType",
            "DeceasedMaidenName",
            "DeceasedGender",
            "DeceasedDeathDate",
            "PartialMonthOfDeath",
            "PartialYearOfDeath",
            "QualifierText",
            "FreeFormatDeathDate",
            "DeceasedBirthDate",
            "PartialMonthOfBirth",
            "PartialYearOfBirth",
            "FreeFormatBirthDate",
            "DeceasedAddress",
        }
    ),
    NS_PD: frozenset({"PersonDeathDate", "PersonBirthDate", "VerificationLevel"}),
    NS_ADDR: frozenset({"Flat", "Building", "Line", "Postcode"}),
    NS_PERSON: frozenset(
        {"PersonNameTitle", "PersonGivenName", "PersonFamilyName", "PersonNameSuffix"}
    ),
    _AD_PD: frozenset(),
    _XSI: frozenset(),
}
_DEFINED_NAMES = frozenset().union(*_DEFINED.values())


def _namespace_for_humans(namespace: str | None) -> str:
    """A namespace, named only when it is one the GRO format uses."""
    if not namespace:
        return "no namespace"
    if namespace in _DEFINED:
        return f"namespace {namespace}"
    return "a namespace the GRO format does not define"


def _name(el: etree._Element) -> tuple[str | None, str]:
    """An element's namespace and local name, from its tag as lxml holds it. (Not through
    `etree.QName`, which refuses a tag libxml2 kept with an undeclared prefix, quoting it.)"""
    tag = str(el.tag)
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return None, tag


def _element_for_humans(el: etree._Element) -> str | None:
    """An element by its name where the GRO format defines that name (with its namespace,
    when that is not the one the format puts it in); None for a name the file invented."""
    namespace, local = _name(el)
    if local in _DEFINED.get(namespace or "", ()):
        return local
    if local in _DEFINED_NAMES:
        return f"{local} in {_namespace_for_humans(namespace)}"
    return None


def _unexpected(el: etree._Element, where: str) -> str:
    name = _element_for_humans(el)
    if name is None:
        return f"unexpected element {where}, of a name the GRO format does not define"
    return f"unexpected element {name} {where}"


def _encoding_for_humans(declared: str) -> str:
    """A declared encoding by the name Python knows it by; one it does not know is not
    repeated."""
    try:
        return f"encoding {codecs.lookup(declared).name}"
    except LookupError:
        return "an encoding that is not one Python knows"


class FileRejectedError(Exception):
    """The file as a whole is unacceptable; nothing from it may be emitted."""

    def __init__(self, reason: str, *, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        located = line is None or f"line {line}" in reason
        super().__init__(reason if located else f"{reason} (line {line})")


class Fragment(NamedTuple):
    """One `DeathRegistration` as a standalone UTF-8 XML document, with its 1-based ordinal."""

    ordinal: int
    xml: bytes


_new_tuple = tuple.__new__


class OversizedRecord(NamedTuple):
    """A record too large to carry: reported, never emitted, never silently dropped.

    `size` is the record's size in bytes; when `exact` is false it is a lower bound (the record
    was not kept whole, and where it began or ended is only known to within one feed).
    """

    ordinal: int
    size: int
    line: int | None = None
    exact: bool = True

    @property
    def reason(self) -> str:
        """Why the record was not emitted: ordinal, line and size, never its content."""
        where = f"record {self.ordinal}" + (f" (line {self.line})" if self.line else "")
        size = f"{self.size} bytes" if self.exact else f"more than {self.size} bytes"
        return f"{where} is {size}, over the {MAX_RECORD_BYTES}-byte limit"


@dataclass(frozen=True, slots=True)
class StructureSummary:
    """What a whole-file check found."""

    records: int
    bytes_read: int


def _syntax_error(err: etree.XMLSyntaxError, *, at_end: bool = False) -> FileRejectedError:
    if at_end:
        return FileRejectedError(
            "the file ends before its root element does: truncated (or not XML at all)"
        )
    name = _ERROR_NAMES.get(err.code, "")
    phrase = _ERROR_PHRASES.get(name) or (
        name.removeprefix("ERR_").replace("_", " ").lower() if name else "malformed XML"
    )
    line, column = err.position if err.position else (err.lineno, 0)
    return FileRejectedError(
        f"not well-formed XML at line {line}, column {column}: {phrase}", line=line
    )


def _ns_declarations(nsmap: dict[str | None, str]) -> bytes:
    parts = []
    for prefix, uri in nsmap.items():
        attr = "xmlns" if prefix is None else f"xmlns:{prefix}"
        quoted = uri.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
        parts.append(f' {attr}="{quoted}"')
    return "".join(parts).encode()


def _prune(el: etree._Element) -> None:
    """Free every finished part of an element the parser is still building.

    Along the path the parser is on (the element, its last child, that child's last child...)
    every element child but the last is removed, with its tail: those have ended. The last child
    of each element on the path stays, and so does the node libxml2 is appending text to, so the
    parser never finds the tree changed under it.
    """
    while (n := len(el)) > 0:
        if n > 1:
            del el[: n - 1]
        el = el[0]


class ExtractReader:
    """One pass over one extract. Iterate `records()` (or call `check()`) once."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        on_record: Callable[[int, etree._Element], None] | None = None,
    ) -> None:
        self._stream = stream
        self._chunk_bytes = chunk_bytes
        # told each record read whole (ordinal, element) as it ends, before it is freed, in
        # either pass: `ingest transform` reads records off it instead of parsing fragments
        self._on_record = on_record
        # the root's start (to watch what comes before the first record), and each record's
        # start and end (to watch a record while it is read)
        self._parser = etree.XMLPullParser(
            events=("start", "end"),
            tag=(RECORD_TAG, COUNT_TAG, ROOT_TAG),
            encoding="utf-8",
            **_HARDENED,
        )
        self._root: etree._Element | None = None
        self._record_count: int | None = None
        self.records_seen = 0
        self.records_sliced = 0
        self.bytes_read = 0
        self._sniffed_root = False
        # size watch: bytes fed to the parser, the record being read and where it was seen
        # starting, and where the last record (or the root's start tag) was seen ending
        self._fed = 0
        self._mark = 0  # _feed_mark(), kept up to date as the parser is fed
        self._fed_before = 0
        self._open: etree._Element | None = None
        self._open_at = 0
        self._boundary = 0
        # a record past the limit, being read without being kept
        self._cutting = False
        self._cut_end_tag = b""
        self._cut_start: int | None = None
        self._at_end_tag = False  # the last feed was the '>' of a possible end of that record
        self._carry = b""  # the end of the previous chunk, for an end tag split across two
        # slicing state
        self._buf = bytearray()
        self._base = 0  # offset in the file of _buf[0]
        self._pos = 0
        self._odd_at = -1  # no '<!' or '<?' from the current record's start to here (_find_odd)
        self._slicing = True
        self._start_tag = b""
        self._end_tag = b""
        self._ns_decls = b""
        self._tag_prefix: str | None = None
        self._record_start: re.Pattern[bytes] = re.compile(rb"<DeathRegistration[\s/>]")
        self._open_prefix = b"<DeathRegistration"
        self._name = b"DeathRegistration"
        self._open_tag = b""

    # -- public -----------------------------------------------------------------------------

    def check(self) -> StructureSummary:
        """Read the whole file, checking its structure, without building any fragment."""
        for _ in self._run(emit_from=None):
            pass
        return StructureSummary(records=self.records_seen, bytes_read=self.bytes_read)

    def records(self, *, skip: int = 0) -> Iterator[Fragment | OversizedRecord]:
        """Yield every record after the first `skip`, then check the trailer."""
        return self._run(emit_from=skip + 1)

    # -- the pass ---------------------------------------------------------------------------

    def _run(self, emit_from: int | None) -> Iterator[Fragment | OversizedRecord]:
        first = True
        while True:
            data = self._stream.read(self._chunk_bytes)
            if first:
                # Streams may return short reads: look at a decent head, whatever the chunk size.
                while data and len(data) < HEAD_BYTES:
                    more = self._stream.read(HEAD_BYTES - len(data))
                    if not more:
                        break
                    data += more
                if data and not data.strip():
                    data = self._past_whitespace(data)
                self._check_head(data)
                first = False
            if not data:
                break
            self.bytes_read += len(data)
            if emit_from is not None and self._slicing:
                self._buf += data
            # Feed the chunk a piece at a time, looking at what was built after each piece.
            # (Inlined: each generator a record is passed up through costs it ~0.1 us more.)
            size, at = len(data), 0
            try:
                while at < size:
                    if self._cutting:
                        stop, self._at_end_tag = self._cut_stop(data, at)
                    else:
                        # up to the next multiple of FEED_BYTES in the file, so that the limits
                        # are judged at the same offsets whatever the chunk size
                        stop = min(at + FEED_BYTES - self._fed % FEED_BYTES, size)
                    self._parser.feed(data if at == 0 and stop == size else data[at:stop])
                    self._fed_before = self._fed
                    self._fed += stop - at
                    self._mark = -(-self._fed // FEED_BYTES) * FEED_BYTES  # _feed_mark()
                    at = stop
                    yield from self._drain(emit_from)
                    self._watch()
            except etree.XMLSyntaxError as err:
                raise _syntax_error(err) from None
            self._carry = (self._carry + data)[-256:] if len(data) < 256 else data[-256:]
            if emit_from is not None and self._slicing:
                # keep the bytes from the end of the last record on; none of a record being
                # read without being kept (its end is found again when it comes)
                done = len(self._buf) if self._cutting else self._pos
                del self._buf[:done]
                self._base += done
                self._pos -= done
        try:
            self._parser.close()
        except etree.XMLSyntaxError as err:
            raise _syntax_error(err, at_end=True) from None
        yield from self._drain(emit_from)
        self._check_end()

    def _watch(self) -> None:
        """After each piece: keep a record past the limit from being built; refuse anything
        else at the root that runs past it.

        Limits are judged only at multiples of FEED_BYTES, from the multiple at or after where
        the record started (or the last one ended): whether a record is cut depends on the file
        alone, never on how it was read.
        """
        if self._open is not None:
            if self._cutting:
                _prune(self._open)
            elif self._fed % FEED_BYTES == 0 and self._fed - self._open_at > MAX_RECORD_BYTES:
                self._start_cutting(self._open)
        elif self._fed % FEED_BYTES == 0:
            # the root must have started in the first MiB: judged there, at that byte (a
            # multiple of FEED_BYTES), whatever the reads; the sniff saw it in the head, or the
            # parser since
            if self._root is None and not self._sniffed_root and self._fed >= MAX_PROLOG_BYTES:
                raise FileRejectedError(_NO_ROOT)
            if self._fed - self._boundary > MAX_RECORD_BYTES:
                self._check_not_records()

    def _past_whitespace(self, data: bytes) -> bytes:
        """A head of nothing but whitespace says nothing yet: read on to what follows it, the
        stream's end (then the file is empty) or past the prolog limit (no root in the first
        MiB). Each read is looked at alone, and kept in a bytearray: linear in the reads."""
        head = bytearray(data)
        while len(head) <= MAX_PROLOG_BYTES:
            more = self._stream.read(self._chunk_bytes)
            if not more:
                return bytes(head)  # whitespace to the end: `_check_head` says empty
            head += more
            if more.strip():
                return bytes(head)
        raise FileRejectedError(_NO_ROOT)

    def _check_head(self, data: bytes) -> None:
        if not data.strip():
            raise FileRejectedError("the file is empty")
        for bom, name in _BOMS.items():
            if data.startswith(bom):
                raise FileRejectedError(f"the file is {name} (byte order mark); expected UTF-8")
        prolog = data[: m.start()] if (m := _FIRST_ELEMENT.search(data)) else data
        if b"<!DOCTYPE" in prolog:
            raise FileRejectedError("the file has a DOCTYPE declaration (DTDs are not allowed)")
        declared = _DECLARED_ENCODING.match(data.removeprefix(b"\xef\xbb\xbf"))
        if declared and declared.group(1).decode().lower().replace("_", "-") not in (
            "utf-8",
            "utf8",
        ):
            raise FileRejectedError(
                f"the file declares {_encoding_for_humans(declared.group(1).decode())}; "
                "expected UTF-8"
            )
        self._root_sniff(data)

    def _root_sniff(self, data: bytes) -> None:
        """Name the root element early, so a wrong file is refused before it is read whole."""
        sniffer = etree.XMLPullParser(events=("start",), encoding="utf-8", **_HARDENED)
        try:
            # From the first thing that is not whitespace (a long blank head hides no root),
            # and never past the first MiB: a root must have started there, its start tag
            # whole (what the parser has built at that byte says the same).
            blank = len(data) - len(data.lstrip())
            sniffer.feed(data[: min(blank + HEAD_BYTES, MAX_PROLOG_BYTES)])
            for _, el in sniffer.read_events():
                self._check_root(el)
                self._sniffed_root = True
                return
        except etree.XMLSyntaxError:
            return  # the real pass reports it, with its position

    def _check_root(self, el: etree._Element) -> None:
        tree = el.getroottree()
        if tree.docinfo.doctype:
            raise FileRejectedError("the file has a DOCTYPE declaration (DTDs are not allowed)")
        namespace, local = _name(el)
        if local != "DeathRegistrationGroup" or namespace != NS_GRO:
            if local == "DeathRegistrationGroup":
                found = f"the root element is in {_namespace_for_humans(namespace)}"
            elif (name := _element_for_humans(el)) is not None:
                found = f"the root element is {name}"
            else:
                found = "the root element's name is not one the GRO format defines"
            raise FileRejectedError(
                f"{found}; expected DeathRegistrationGroup in namespace {NS_GRO}",
                line=el.sourceline,
            )

    def _drain(self, emit_from: int | None) -> Iterator[Fragment | OversizedRecord]:
        """Handle what the parser has seen since the last look.

        The reader's hot loop. The common case, a record that ends where it should in a plain
        layout, is handled here, in place; anything else, or any doubt, goes to the general
        methods (`_record_started`, `_record_ended`), which decide it afresh: this loop only
        takes a record when they would take it the same way, to the byte. It is one loop and
        not a few small methods because a record costs lxml about 12 us and everything here
        comes on top: a method call about 0.1 us, an attribute a few hundredths, a `find`
        over the record 1 us.
        """
        # the same for the whole pass: only then can a record take the short way
        short = emit_from is not None and self._on_record is None
        emit = -1 if emit_from is None else emit_from
        root = self._root
        name, end_tag, start_tag = self._name, self._end_tag, self._start_tag
        for event, el in self._parser.read_events():
            if el is not self._open:
                # (lxml hands out one Python object per node for as long as it is held: the
                # record that was opened is the one that ends, and its name is known)
                if event == "start":
                    if root is None:
                        self._started_before_root(el)
                        root = self._root
                    elif self._open is None and el.getparent() is root and el.tag == RECORD_TAG:
                        # what _record_started does, whose comment says why the text goes
                        self._open = el
                        self._open_at = self._mark
                        root.text = None
                    continue
                tag = el.tag
                if tag == COUNT_TAG:
                    if root is None:
                        self._adopt_root(el)
                        root = self._root
                    self._count_ended(el)
                    continue
                if tag != RECORD_TAG:
                    continue
                out = self._record_ended(el, emit_from)  # a record out of place: refused
            elif (
                short
                and el is not None  # (it is not: this tells mypy, as `is self._open` did not)
                and self._slicing
                and not self._cutting
                and self.records_seen
                and el.getprevious() is None
                and self._record_count is None
                and el.prefix == self._tag_prefix
            ):
                # Read whole, in its place, sliced since the first: what `_slice` would do, as
                # long as nothing needs a second look.
                buf, pos = self._buf, self._pos
                start = buf.find(start_tag, pos)
                inner = start + len(start_tag)
                at = buf.find(name, inner)
                end = at - 2
                if (
                    start < 0
                    or at < 0
                    or buf.find(b"<", pos, start) >= 0
                    or not buf.startswith(end_tag, end)
                    or end - 2 >= self._odd_at - self._base
                ):
                    out = self._record_ended(el, emit_from)
                else:
                    xml = b"".join((self._open_tag, buf[inner:end], end_tag))
                    self._pos = end + len(end_tag)
                    self.records_sliced += 1
                    self.records_seen = ordinal = self.records_seen + 1
                    out = None
                    if ordinal >= emit:
                        if len(xml) > MAX_RECORD_BYTES:
                            out = OversizedRecord(ordinal, len(xml), el.sourceline)
                        else:
                            out = _new_tuple(Fragment, (ordinal, xml))
                    self._open = None
                    self._boundary = self._mark
                    el.clear(keep_tail=True)  # as _record_ended does, and why
                    root.remove(el)  # type: ignore[union-attr]
                    if out is not None:
                        yield out
                    continue
            else:
                out = self._record_ended(el, emit_from)
            name, end_tag, start_tag = self._name, self._end_tag, self._start_tag
            if out is not None:
                yield out

    def _started_before_root(self, el: etree._Element) -> None:
        """A start seen before the root was: the root's own, or a record's."""
        tag = el.tag
        if tag == RECORD_TAG:
            self._record_started(el)
        elif tag == ROOT_TAG:
            self._adopt_root(el, is_root=True)

    def _adopt_root(self, el: etree._Element, *, is_root: bool = False) -> None:
        root = el if is_root else el.getparent()
        if root is None or root.getparent() is not None:
            raise FileRejectedError(
                f"{_element_for_humans(el)} is not a child of the root element",
                line=el.sourceline,
            )
        self._check_root(root)
        self._root = root
        self._ns_decls = _ns_declarations(dict(root.nsmap))
        self._boundary = self._feed_mark()

    def _record_started(self, el: etree._Element) -> None:
        if self._root is None:
            self._adopt_root(el)
        root = self._root
        if self._open is None and el.getparent() is root:
            self._open = el
            self._open_at = self._mark
            # Nothing but whitespace may precede a record now (earlier records are gone, and a
            # stray element is refused when the record ends). Drop it, so that removing the
            # record later leaves the root empty: were a text node left last, libxml2 would go
            # on appending a long tail still being parsed to it, with the removed tail's length
            # (a heap overflow, seen with over 300 bytes of CRLF whitespace between records).
            root.text = None

    def _record_ended(
        self, el: etree._Element, emit_from: int | None
    ) -> Fragment | OversizedRecord | None:
        root = self._root
        ordinal = self.records_seen + 1
        # one cheap test for the normal case; the detail only when something is off
        if (
            el.getparent() is not root
            or self._record_count is not None
            or (el.getprevious() is not None)
        ):
            self._record_out_of_place(el, ordinal)
        self.records_seen = ordinal
        out: Fragment | OversizedRecord | None = None
        if self._on_record is not None and not self._cutting:
            self._on_record(ordinal, el)
        if self._cutting:
            out = self._cut_record_ended(el, ordinal, emit_from)
        elif emit_from is not None:
            xml = self._slice(el, ordinal == 1) if self._slicing else None
            if ordinal >= emit_from:
                if xml is None:
                    xml = etree.tostring(el, encoding="utf-8", with_tail=False)
                if len(xml) > MAX_RECORD_BYTES:
                    out = OversizedRecord(ordinal, len(xml), el.sourceline)
                else:
                    # (a NamedTuple's own __new__ is a Python function: this is 4x cheaper)
                    out = _new_tuple(Fragment, (ordinal, xml))
        self._open = None
        self._boundary = self._mark
        if self._on_record is None:
            # Nobody holds the record: free its content here, so that removing it moves one
            # empty element out of the document instead of re-homing its whole subtree (lxml
            # walks every node it moves: about 3 us a record here, a quarter of what parsing
            # it costs). Its tail is kept, to go with it as before. A record handed to
            # `on_record` is removed whole: whoever holds it may read it later.
            el.clear(keep_tail=True)
        root.remove(el)  # type: ignore[union-attr]
        return out

    def _record_out_of_place(self, el: etree._Element, ordinal: int) -> None:
        if el.getparent() is not self._root:
            raise FileRejectedError(
                f"DeathRegistration {ordinal} is not a child of the root element",
                line=el.sourceline,
            )
        if self._record_count is not None:
            raise FileRejectedError(
                f"DeathRegistration {ordinal} comes after RecordCount, which must be last",
                line=el.sourceline,
            )
        self._drop_strays(el, f"before DeathRegistration {ordinal}")

    def _drop_strays(self, el: etree._Element, where: str) -> None:
        # Records are removed as soon as they end, so anything before one is a stray element.
        prev = el.getprevious()
        while prev is not None:
            if isinstance(prev.tag, str):
                raise FileRejectedError(_unexpected(prev, where), line=prev.sourceline)
            prev.getparent().remove(prev)
            prev = el.getprevious()

    def _count_ended(self, el: etree._Element) -> None:
        if el.getparent() is not self._root:
            raise FileRejectedError(
                "RecordCount is not a child of the root element", line=el.sourceline
            )
        if self._record_count is not None:
            raise FileRejectedError("RecordCount occurs more than once", line=el.sourceline)
        self._drop_strays(el, "before RecordCount")
        text = (el.text or "").strip()
        if not text.isascii() or not text.isdigit():
            raise FileRejectedError("RecordCount is not a whole number", line=el.sourceline)
        self._record_count = int(text)
        self._boundary = self._feed_mark()

    def _check_end(self) -> None:
        root = self._root
        if root is None:
            raise FileRejectedError("the file has no DeathRegistrationGroup root element")
        for child in root:
            if isinstance(child.tag, str) and child.tag != COUNT_TAG:
                raise FileRejectedError(
                    _unexpected(child, "after the records"), line=child.sourceline
                )
        if self._record_count is None:
            raise FileRejectedError(
                f"the RecordCount trailer is missing (the file holds {self.records_seen} "
                "records): truncated or corrupt"
            )
        if self._record_count != self.records_seen:
            raise FileRejectedError(
                f"RecordCount says {self._record_count} but the file holds "
                f"{self.records_seen} DeathRegistration records"
            )

    # -- size limits while reading ----------------------------------------------------------

    def _feed_mark(self) -> int:
        """The first multiple of FEED_BYTES at or after what has been fed: an offset at or after
        the event just seen, and the same whatever the chunk size."""
        return -(-self._fed // FEED_BYTES) * FEED_BYTES

    def _check_not_records(self) -> None:
        """Far past the last record and none open: refuse if an element is what is there."""
        root = self._root
        if root is None:
            return  # still before the root: the prolog limit applies
        for child in root:
            if child.tag == COUNT_TAG and self._record_count is not None:
                continue  # the trailer, read and checked
            if self._record_count is not None:
                where = "after RecordCount"
            elif self.records_seen:
                where = f"after DeathRegistration {self.records_seen}"
            else:
                where = "before the first record"
            raise FileRejectedError(
                f"more than {self._fed - self._boundary} bytes {where} hold no record: "
                f"an element that is not a record starts at line {child.sourceline} "
                f"(the limit is {MAX_RECORD_BYTES} bytes)",
                line=child.sourceline,
            )

    def _start_cutting(self, el: etree._Element) -> None:
        """The record being read is past the limit: stop keeping it."""
        self._cutting = True
        name = "DeathRegistration" if el.prefix is None else f"{el.prefix}:DeathRegistration"
        self._cut_end_tag = f"</{name}>".encode()
        self._cut_start = self._find_cut_start(el)
        _prune(el)

    def _find_cut_start(self, el: etree._Element) -> int | None:
        """Where in the file the record being cut began, if the slicer's buffer still says so
        for certain. Only its reported size depends on this."""
        if not self._slicing or not self._buf:
            return None
        if self._start_tag and el.prefix != self._tag_prefix:
            self._stop_slicing()
            return None
        if not self._start_tag:
            self._set_record_tag(el.prefix)
        start = self._find_start(self.records_seen == 0)
        if start < 0 or self._base + start >= self._open_at:
            return None
        return self._base + start

    def _cut_stop(self, data: bytes, at: int) -> tuple[int, bool]:
        """How far to feed while a record is being cut, and whether that is the '>' of what may
        be its end tag.

        Each candidate end tag is fed in two steps, up to its '>' and then the '>' alone. If the
        record ends on the second, its end is known to the byte: the slicer can carry on after
        it. If it ends anywhere else (an end tag spelled with spaces, or split in a way this
        does not see), the slicer stops for the rest of the file: slower, still right.
        """
        tag = self._cut_end_tag
        n = len(tag)
        # never past the next multiple of FEED_BYTES in the file: the limits are judged there,
        # and a feed that ran past one (after a candidate, the feeds no longer start on one)
        # would make whether the next record is cut depend on where the reads ended
        mark = at + FEED_BYTES - self._fed % FEED_BYTES
        gt = -1
        if at < n - 1 and self._carry:
            # an end tag that began in the previous chunk
            head = self._carry[-(n - 1) :]
            i = (head + data[: n - 1]).find(tag)
            if i >= 0 and i + n - 1 - len(head) >= at:
                gt = i + n - 1 - len(head)
        if gt < 0:
            i = data.find(tag, max(0, at - n + 1), mark + n)
            if i >= 0:
                gt = i + n - 1
        if gt < 0 or gt > mark:
            return min(mark, len(data)), False
        if gt > at:
            return gt, False
        return gt + 1, True

    def _cut_record_ended(
        self, el: etree._Element, ordinal: int, emit_from: int | None
    ) -> OversizedRecord | None:
        self._cutting = False
        end = self._fed if self._at_end_tag else None
        if emit_from is not None and self._slicing:
            if end is None or end < self._base:
                self._stop_slicing()
            else:
                self._pos = end - self._base
        start = self._cut_start
        if start is not None and end is not None:
            size, exact = end - start, True
        else:
            size, exact = (end if end is not None else self._fed_before) - self._open_at, False
        if emit_from is None or ordinal < emit_from:
            return None
        return OversizedRecord(ordinal, size, el.sourceline, exact)

    # -- slicing ----------------------------------------------------------------------------

    def _stop_slicing(self) -> None:
        self._slicing = False
        self._buf = bytearray()

    def _find_start(self, first: bool) -> int:
        """Where the next record's start tag is in the buffer, or -1 if the layout before it
        is anything but plain."""
        buf = self._buf
        pos = self._pos
        start = buf.find(self._start_tag, pos)
        if start < 0:
            return -1
        if first:
            gap = bytes(buf[pos:start])
            odd = (
                b"<!" in gap
                or gap.count(b"<?") > gap.startswith(b"<?xml")
                or self._record_start.search(gap) is not None
            )
        else:
            # between two records only whitespace may stand: any markup there is a surprise
            odd = buf.find(b"<", pos, start) >= 0
        return -1 if odd else start

    def _slice(self, el: etree._Element, first: bool) -> bytes | None:
        """The record's own bytes, or None (and slicing off for good) if the layout is odd."""
        if el.prefix != self._tag_prefix or not self._start_tag:
            if self._start_tag:
                self._stop_slicing()
                return None
            self._set_record_tag(el.prefix)
        buf = self._buf
        start = self._find_start(first)
        if start < 0:
            self._stop_slicing()
            return None
        inner_start = start + len(self._start_tag)
        # The record ends at the first end tag of its name, unless an element of that name (or
        # of one beginning with it) opens inside it first: then leave it to tostring. Both tags
        # hold the name, so one search finds whichever comes first: when that is the end tag,
        # no such element opened before it (nor could an end tag of its name come earlier).
        at = buf.find(self._name, inner_start)
        end = at - 2
        if at < 0 or not buf.startswith(self._end_tag, end):
            # the name first turns up as something else: look for each tag on its own
            after = buf.find(self._open_prefix, inner_start)
            end = buf.find(self._end_tag, start)
            if end < 0 or 0 <= after < end:
                self._stop_slicing()
                return None
        # Comments, CDATA or PIs in the record: leave it to tostring too. Where the next '<!'
        # or '<?' is was found once for many records (see _find_odd).
        if end - 2 >= self._odd_at - self._base:
            self._find_odd(inner_start)
            if end - 2 >= self._odd_at - self._base:
                self._stop_slicing()
                return None
        self._pos = end + len(self._end_tag)
        self.records_sliced += 1
        # (copying the record out of the buffer first is cheaper than a memoryview: making
        # one, and the `with` that releases it, cost more than copying 1.5 KB)
        return b"".join((self._open_tag, buf[inner_start:end], self._end_tag))

    def _find_odd(self, at: int) -> None:
        """Find the first '<!' or '<?' at or after `at` in the buffer (if none, the buffer's last
        byte, which the next chunk may yet follow with one), as an offset in the file.

        Records are sliced in file order, each looking from its own start, so for as long as a
        record ends before that offset it holds neither, and the buffer is not searched again.
        A two-byte `find` is slow (libc's memchr serves only one byte): this looks for the rare
        '!' and '?' instead and checks the byte before, once a chunk instead of twice a record.
        """
        buf = self._buf
        first = len(buf) - 1
        for mark in (b"!", b"?"):
            i = buf.find(mark, at + 1, first + 1)
            while i >= 0:
                if buf[i - 1] == 0x3C:  # '<'
                    first = i - 1
                    break
                i = buf.find(mark, i + 1, first + 1)
        self._odd_at = self._base + first

    def _set_record_tag(self, prefix: str | None) -> None:
        name = "DeathRegistration" if prefix is None else f"{prefix}:DeathRegistration"
        self._tag_prefix = prefix
        self._start_tag = f"<{name}>".encode()
        self._end_tag = f"</{name}>".encode()
        self._open_tag = f"<{name}".encode() + self._ns_decls + b">"
        start = re.escape(f"<{name}").encode() + rb"[\s/>]"
        self._record_start = re.compile(start)
        self._open_prefix = f"<{name}".encode()
        self._name = name.encode()
