"""Secret masking in event text, including secrets split across output chunks."""

from __future__ import annotations

from sandboxctl.services.events import MASK, Redactor, StreamRedactor

SECRET = "hunter2-secret"


def feed_all(chunks: list[bytes]) -> str:
    stream = StreamRedactor(Redactor([SECRET, "ok"]))
    return "".join(stream.feed(chunk) for chunk in chunks) + stream.flush()


def test_secret_is_masked_whole_and_in_json_escaped_form() -> None:
    redactor = Redactor(['quo"te-secret', SECRET])
    assert redactor(f"a {SECRET} b") == f"a {MASK} b"
    assert redactor('{"text": "quo\\"te-secret"}') == '{"text": "***"}'


def test_short_values_are_not_masked() -> None:
    assert Redactor(["ok"])("ok then") == "ok then"


def test_secret_split_across_chunks_is_masked() -> None:
    data = f"before {SECRET} after\n".encode()
    for cut in range(1, len(data)):
        assert feed_all([data[:cut], data[cut:]]) == f"before {MASK} after\n", cut
    assert feed_all([bytes([b]) for b in data]) == f"before {MASK} after\n"


def test_text_that_only_looks_like_a_secret_start_is_released() -> None:
    stream = StreamRedactor(Redactor([SECRET]))
    assert stream.feed(b"say hun") == "say "
    assert stream.feed(b"gry\n") == "hungry\n"
    assert stream.feed(b"bye hunter") == "bye "
    assert stream.flush() == "hunter"


def test_utf8_split_across_chunks_is_decoded() -> None:
    data = "naïve ✓\n".encode()
    assert feed_all([data[:3], data[3:8], data[8:]]) == "naïve ✓\n"
