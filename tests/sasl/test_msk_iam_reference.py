"""The AWS_MSK_IAM worked example: the independent Python reference reproduces every value
that docs/SECURITY.md shows and Tests/VeilSASLTests/MSKIAMTests.swift checks Veil against."""

from pathlib import Path

from msk_iam_reference import EXAMPLE, build

DOC = (Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md").read_text()
SWIFT = (Path(__file__).resolve().parents[2] / "Tests" / "VeilSASLTests" / "MSKIAMTests.swift").read_text()


def test_reference_matches_the_documented_and_tested_example():
    result = build(**EXAMPLE)
    for key in ("canonical_request", "string_to_sign", "signature", "payload"):
        assert result[key] in DOC, key
    assert result["signature"] in SWIFT and result["payload"] in SWIFT
    assert result["string_to_sign"].splitlines()[-1] in SWIFT
