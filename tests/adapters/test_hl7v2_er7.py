"""The ER7 tokenizer: delimiters from MSH, segment separators, escapes, repetitions, charsets."""

from __future__ import annotations

import pytest

from adapters import MalformedInput, UnsafeInput, UnsupportedInput
from adapters.hl7v2 import er7
from tests.adapters.adapters_testkit import hl7

MSG = (
    "MSH|^~\\&|LAB|ZHT|ZORGBRUG|ZORGBRUG|20240306091500+0100||ORU^R01|42|P|2.5\r"
    "PID|1||123^^^ZHT^PI~456^^^ZHT^MR||van Dijk&van&Dijk^Els^^^^^L\r"
    "OBX|1|FT|x^y^LN||Eerste regel\\.br\\tweede \\T\\ derde \\F\\ \\S\\ \\R\\ \\E\\ \\X4869\\|||||F\r"
)


def test_fields_repetitions_components_and_subcomponents_are_read_by_hl7_numbering() -> None:
    message = er7.parse(MSG.encode())
    pid = message.segment("PID")
    assert pid is not None
    assert [r.get(1) for r in pid.repetitions(3)] == ["123", "456"]
    assert pid.repetitions(3)[1].get(5) == "MR"
    assert pid.first(5).subcomponents(1) == ["van Dijk", "van", "Dijk"]
    assert pid.value(5, 1, 2) == "van"
    assert pid.value(5, 2) == "Els"
    assert message.message_type == "ORU^R01"
    assert message.control_id == "42"
    assert message.version == "2.5"


def test_escape_sequences_are_decoded_after_splitting() -> None:
    obx = er7.parse(MSG.encode()).segment("OBX")
    assert obx is not None
    assert obx.first(5).text() == "Eerste regel\ntweede & derde | ^ ~ \\ Hi"


def test_delimiters_come_from_msh_1_and_msh_2() -> None:
    custom = MSG.replace("|", "#").replace("^", "$").replace("~", "!").replace("&", "%")
    # \T\ etc. keep meaning "the subcomponent delimiter", whatever character that is.
    message = er7.parse(custom.encode())
    assert message.delimiters.field == "#"
    pid = message.segment("PID")
    assert pid is not None
    assert [r.get(1) for r in pid.repetitions(3)] == ["123", "456"]
    obx = message.segment("OBX")
    assert obx is not None
    assert obx.first(5).text() == "Eerste regel\ntweede % derde # $ ! \\ Hi"


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_cr_lf_and_crlf_separate_segments(separator: str) -> None:
    message = er7.parse(MSG.replace("\r", separator).encode())
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBX"]


def test_mllp_framing_left_around_a_message_is_ignored() -> None:
    message = er7.parse(b"\x0b" + MSG.encode() + b"\x1c\r")
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBX"]


def test_a_utf8_byte_order_mark_is_skipped() -> None:
    message = er7.parse(b"\xef\xbb\xbf" + MSG.encode())
    assert message.segments[0].name == "MSH"


def test_latin1_named_in_msh_18_is_decoded_as_latin1() -> None:
    text = MSG.replace("|P|2.5", "|P|2.5||||||8859/1").replace("Els", "Ren\u00e9e")
    pid = er7.parse(text.encode("latin-1")).segment("PID")
    assert pid is not None
    assert pid.value(5, 2) == "Ren\u00e9e"


def test_non_utf8_without_a_charset_is_read_as_latin1_with_a_note() -> None:
    message = er7.parse(MSG.replace("Els", "Ren\u00e9e").encode("latin-1"))
    pid = message.segment("PID")
    assert pid is not None
    assert pid.value(5, 2) == "Ren\u00e9e"
    assert message.notes and message.notes[0][0] == "MSH-18"


def test_add_segments_continue_the_segment_before_them() -> None:
    split = MSG.replace("Eerste regel", "Eerste\rADD| regel")
    obx = er7.parse(split.encode()).segment("OBX")
    assert obx is not None
    assert obx.first(5).text().startswith("Eerste regel\n")


def test_repeated_segments_are_labelled_by_occurrence_for_issue_locations() -> None:
    message = er7.parse(hl7("LAB-ORU-2.hl7"))
    obx = message.all("OBX")
    assert obx[2].location(5) == "OBX[3]-5"
    assert message.segment("PID").location(3, 1, 1) == "PID-3[1].1"  # type: ignore[union-attr]


def test_hl7_null_reads_as_absent() -> None:
    pid = er7.parse(MSG.replace("^Els^", '^""^').encode()).segment("PID")
    assert pid is not None
    assert pid.value(5, 2) == ""


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"", "MSH"),
        (b"PID|1||123", "MSH"),
        (b"MSH|^|||||||ADT^A01|1|P|2.5", "MSH-2"),
        (b"MSH|^^~\\|||||||ADT^A01|1|P|2.5", "MSH-2"),
        (b"MSHA^~\\&|||||||ADT^A01|1|P|2.5", "MSH-1"),
        (b"MSH|^~\\&|||||||ADT^A01|1|P|2.5\rpid|1", "segment 2"),
        (b"MSH|^~\\&|||||||ADT^A01|1|P|2.5\rPID|1\x00", "segment 2"),
        (b"MSH|^~\\&|||||||ADT^A01|1|P|2.5\rMSH|^~\\&|||||||ADT^A01|2|P|2.5", "segment 2"),
    ],
)
def test_what_is_not_er7_is_malformed_with_its_place(data: bytes, where: str) -> None:
    with pytest.raises(MalformedInput) as caught:
        er7.parse(data)
    assert caught.value.location == where


def test_batches_are_refused_as_unsupported() -> None:
    with pytest.raises(UnsupportedInput, match="batch"):
        er7.parse(b"FHS|^~\\&|X\rBHS|^~\\&|X\r" + MSG.encode())


def test_oversized_messages_are_refused_unread() -> None:
    with pytest.raises(UnsafeInput):
        er7.parse(b"MSH|^~\\&|" + b"x" * (er7.MAX_MESSAGE_BYTES + 1))


def test_escape_text_round_trips_through_unescape() -> None:
    d = er7.DEFAULT_DELIMITERS
    original = "a|b^c~d\\e&f\ng"
    assert er7.unescape(d.escape_text(original), d) == original
