"""The AWS_MSK_IAM worked example: the independent Python reference reproduces every value
that docs/SECURITY.md shows and Tests/VeilSASLTests/MSKIAMTests.swift checks Veil against."""

import sys
from pathlib import Path

# The reference sits beside this test as a plain module (no conftest: the interop suite
# has one named the same, and both directories may be collected in one run).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from msk_iam_reference import EXAMPLE, build  # noqa: E402

DOC = (Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md").read_text()
SWIFT = (Path(__file__).resolve().parents[2] / "Tests" / "VeilSASLTests" / "MSKIAMTests.swift").read_text()


def test_reference_matches_the_documented_and_tested_example():
    result = build(**EXAMPLE)
    for key in ("canonical_request", "string_to_sign", "signature", "payload"):
        assert result[key] in DOC, key
    assert result["signature"] in SWIFT and result["payload"] in SWIFT
    assert result["string_to_sign"].splitlines()[-1] in SWIFT
