"""The llama2.c tokenizer: its O(n log n) merging gives the ids of llama2.c's own rule (repeatedly
merge the adjacent pair of highest score, the leftmost among equals; brute force here), decode
inverts encode, and stories260k's tokenizer reproduces a known prefix."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA
from evoforge.compress import Llama2cTokenizer, load_tokenizer

TOK = SHARED_DATA / "stories260k" / "tok512.bin"


def brute(tok: Llama2cTokenizer, text: str) -> list[int]:
    ids = []
    for ch in text:
        b = ch.encode()
        ids += [tok.ids[b]] if b in tok.ids else [x + 3 for x in b]
    while True:
        best, where = None, -1
        for i in range(len(ids) - 1):
            j = tok.ids.get(tok.pieces[ids[i]] + tok.pieces[ids[i + 1]])
            if j is not None and (best is None or tok.scores[j] > best):
                best, where = tok.scores[j], i
        if where < 0:
            return ids
        ids[where:where + 2] = [tok.ids[tok.pieces[ids[where]] + tok.pieces[ids[where + 1]]]]


def _write(path, pieces, scores):
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(p) for p in pieces)))
        for p, s in zip(pieces, scores):
            f.write(struct.pack("<fi", s, len(p)) + p)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A tokenizer with ties between merge scores (the leftmost-first rule matters)."""
    pieces = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    pieces += [b"a", b"b", b"c", b" ", b"ab", b"bc", b"ca", b"abc", b" a", b"aa", b"aaa", b"bca"]
    scores = [0.0] * 259 + [-1.0] * 4 + [-2.0, -2.0, -2.0, -3.0, -2.5, -2.0, -4.0, -3.0]
    p = tmp_path_factory.mktemp("tok") / "tok.bin"
    _write(p, pieces, scores)
    return Llama2cTokenizer(p)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abc é", max_size=40))
def test_merging_equals_llama2c_rule(small, text):
    ids = small.encode(text)
    assert ids == brute(small, text)
    assert small.decode(ids) == text


@pytest.mark.skipif(not TOK.is_file(), reason="stories260k tokenizer absent")
def test_stories_tokenizer():
    tok = load_tokenizer(TOK)
    s = "Once upon a time, there was a little girl named Lily."
    assert tok.encode(s)[:4] == [441, 416, 331, 407] and tok.decode(tok.encode(s)) == s
    text = (SHARED_DATA / "text" / "tinyshakespeare.txt").read_text()[:3000]
    assert tok.encode(text) == brute(tok, text)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        Llama2cTokenizer(tmp_path / "nope.bin")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(struct.pack("<i", 4) + struct.pack("<fi", 0.0, 99) + b"ab")
    with pytest.raises(ValueError, match="not a llama2.c tokenizer"):
        Llama2cTokenizer(bad)
