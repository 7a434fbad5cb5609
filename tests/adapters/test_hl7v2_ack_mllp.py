"""ACKs for the MLLP listener and MLLP framing."""

from __future__ import annotations

import pytest

from adapters import MllpDecoder, SourceInfo, UnsupportedInput, ack, convert, frame
from adapters.hl7v2 import er7
from tests.adapters.adapters_testkit import BAD_INPUTS, hl7


def test_ack_swaps_sender_and_receiver_and_echoes_the_control_id() -> None:
    original = hl7("ORU-R01-01.hl7")
    answer = er7.parse(ack(original, "AA"))
    sent = er7.parse(original)
    msh, msa = answer.msh, answer.segment("MSA")
    assert msa is not None
    assert (msh.value(3), msh.value(4), msh.value(5), msh.value(6)) == (
        sent.msh.value(5), sent.msh.value(6), sent.msh.value(3), sent.msh.value(4)
    )  # fmt: skip
    assert answer.message_type == "ACK^R01"
    assert answer.version == "2.5.1"
    assert msh.value(11) == "T"  # the sender's processing id
    assert msh.value(10) and msh.value(10) != sent.control_id
    assert (msa.value(1), msa.value(2)) == (
        "AA",
        "2.16.840.1.114222.4.3.3.5.1.2-20120314235954.325",
    )
    assert answer.segment("ERR") is None


def test_a_rejection_carries_the_error_code_location_and_escaped_text(source: SourceInfo) -> None:
    original = hl7("ORM-O01-02.hl7")
    with pytest.raises(UnsupportedInput) as caught:
        convert("hl7v2", original, source)
    answer = er7.parse(ack(original, "AR", caught.value))
    err = answer.segment("ERR")
    assert err is not None
    assert err.value(2, 1) == "MSH" and err.value(2, 3) == "9"  # ERR-2 error location
    assert (err.value(3, 1), err.value(3, 3)) == ("200", "HL70357")
    assert err.value(4) == "E"
    assert err.value(8) == "MSH-9: unsupported message type ORM^O01"  # the ^ travelled escaped


def test_versions_before_2_5_get_the_text_in_msa_3_and_err_1() -> None:
    original = hl7("ADT01-23.hl7")
    answer = er7.parse(ack(original, "AE", "PID-3 has no identifier"))
    msa, err = answer.segment("MSA"), answer.segment("ERR")
    assert msa is not None and err is not None
    assert msa.value(3) == "PID-3 has no identifier"
    assert err.value(1, 4, 1) == "207"


@pytest.mark.parametrize(
    "path", sorted(p for p in BAD_INPUTS.rglob("*") if p.is_file()), ids=lambda p: p.name[:20]
)
def test_garbage_still_gets_a_parseable_ack_with_a_generated_control_id(path) -> None:
    answer = er7.parse(ack(path.read_bytes(), "AR", "not HL7 v2"))
    msa = answer.segment("MSA")
    assert msa is not None and msa.value(1) == "AR"
    assert msa.value(2)


def test_ack_codes_are_checked() -> None:
    with pytest.raises(ValueError, match="AA, AE or AR"):
        ack(b"MSH|^~\\&|", "CA")


def test_framing_round_trips_through_the_decoder_byte_by_byte() -> None:
    messages = [hl7("ADT-A01-01.hl7"), hl7("LAB-ORU-2.hl7")]
    stream = b"".join(frame(m) for m in messages)
    decoder = MllpDecoder()
    received = [m for byte in range(len(stream)) for m in decoder.feed(stream[byte : byte + 1])]
    assert received == messages
    assert decoder.garbage_bytes == 0 and decoder.pending == 0


def test_garbage_between_frames_is_skipped_and_counted() -> None:
    decoder = MllpDecoder()
    received = decoder.feed(b"noise" + frame(b"MSH|1") + b"\r\nmore" + frame(b"MSH|2"))
    assert received == [b"MSH|1", b"MSH|2"]
    # the CR that ends a frame is not garbage; the CR LF after it is
    assert decoder.garbage_bytes == len(b"noise") + len(b"\r\nmore")


def test_an_oversized_frame_is_dropped_without_losing_the_next_one() -> None:
    decoder = MllpDecoder(max_message_bytes=64)
    received = decoder.feed(b"\x0b" + b"x" * 50)
    received += decoder.feed(b"y" * 50 + b"\x1c\r" + frame(b"MSH|ok"))
    assert received == [b"MSH|ok"]
    assert decoder.oversized_frames == 1
    assert decoder.pending == 0


def test_a_new_start_block_abandons_an_unfinished_frame() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\x0bMSH|half" + frame(b"MSH|whole")) == [b"MSH|whole"]
    assert decoder.garbage_bytes == len(b"MSH|half") + 1
