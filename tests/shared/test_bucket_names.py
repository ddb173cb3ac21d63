"""The bucket name rules: what reaches the chain is a lowercase DNS-label-like ASCII name."""

from __future__ import annotations

import pytest

from shared.bucket_names import MAX_LENGTH, MIN_LENGTH, name_problem


@pytest.mark.parametrize(
    "name",
    [
        "abc",
        "my-bucket",
        "bucket-2024",
        "0ab",
        "a1b",
        "a-b",
        "a--b",
        "a" * MIN_LENGTH,
        "a" * MAX_LENGTH,
        "1" * 10,
    ],
)
def test_valid_name_has_no_problem(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "a", "ab", "a" * (MIN_LENGTH - 1)])
def test_name_shorter_than_minimum_is_rejected_for_length(name: str) -> None:
    assert name_problem(name) == f"must be at least {MIN_LENGTH} characters long"


@pytest.mark.parametrize("name", ["a" * (MAX_LENGTH + 1), "a" * 255, "a" * 1000])
def test_name_longer_than_maximum_is_rejected_for_length(name: str) -> None:
    assert name_problem(name) == f"must be at most {MAX_LENGTH} characters long"


@pytest.mark.parametrize("name", ["Abc", "ABC", "my-Bucket", "bucketX"])
def test_uppercase_letters_are_rejected(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None and "lowercase" in problem


@pytest.mark.parametrize("name", ["café", "buckét", "ведро", "名前です", "abc\u00a0d", "ab\u200bc"])
def test_non_ascii_name_is_rejected_as_non_ascii(name: str) -> None:
    assert name_problem(name) == "must contain only ASCII characters"


@pytest.mark.parametrize("name", ["-abc", "abc-", "-ab-", "---"])
def test_leading_or_trailing_hyphen_is_rejected(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None and "start and end with a letter or a digit" in problem


@pytest.mark.parametrize(
    "name", ["../x", "..", "...", "a/b", "abc/", "/abc", "a\\b", "./abc", "a.b", "abc..def"]
)
def test_path_like_names_are_rejected(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["my bucket", " abc", "abc ", "a\tb", "ab\nc", "abc\n"])
def test_whitespace_anywhere_is_rejected(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["abc\x00", "\x00abc", "ab\x00cd", "\x00\x00\x00"])
def test_null_bytes_are_rejected(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["a_b_c", "abc!", "a@b", "a:b", "a;b", "a$b", "a%2fb"])
def test_punctuation_other_than_hyphen_is_rejected(name: str) -> None:
    assert name_problem(name) is not None
