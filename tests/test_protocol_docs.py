"""docs/protocol.md documents every message type and every error code the code knows."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.codec import FROM_AGENT, FROM_COLLECTOR_TO_AGENT, FROM_COLLECTOR_TO_OPERATOR, FROM_OPERATOR
from protocol.errors import ErrorCode

DOC = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
TYPES = sorted({*FROM_AGENT, *FROM_COLLECTOR_TO_AGENT, *FROM_OPERATOR, *FROM_COLLECTOR_TO_OPERATOR})


@pytest.mark.parametrize("kind", TYPES)
def test_every_message_type_has_an_example(kind):
    assert f'"type": "{kind}"' in DOC


@pytest.mark.parametrize("code", [c.value for c in ErrorCode])
def test_every_error_code_is_explained(code):
    assert f"| `{code}` |" in DOC
