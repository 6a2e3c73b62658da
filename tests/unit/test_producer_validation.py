"""The Python producer checks each payload with the worker's own rules before it sends it: a bad
one raises InvalidInput at the call site (naming the field and the rule) and nothing is sent.
The validators import nothing beyond the producer's base install."""

from __future__ import annotations

import os
import textwrap
from typing import Any

import pytest

from b24producer import InvalidInput, Producer
from tests.harness import ROOT, run_python

#: no broker answers here: a call that got past validation would fail to connect instead
producer = Producer("redis://127.0.0.1:1/0")


def test_the_issues_example_raises_naming_the_field() -> None:
    # as written in the issue, the call lacks `connector`: the typed signature refuses it (mypy
    # too, before it runs); with it, the worker's rules refuse the rest, field by field
    with pytest.raises(TypeError, match="connector"):
        producer.confirm(portal="a b", line="x", im={"chat_id": 1})  # type: ignore[call-arg,arg-type]
    with pytest.raises(InvalidInput) as err:
        producer.confirm(portal="a b", connector="c", line="x", im={"chat_id": 1})  # type: ignore[arg-type]
    assert err.value.field == "portal" and "letters, digits" in err.value.rule
    with pytest.raises(InvalidInput) as err:
        producer.confirm(portal="p", connector="c", line="x", im={"chat_id": 1})  # type: ignore[arg-type]
    assert err.value.field == "line" and err.value.rule == "must be a positive integer"


PC = {"portal": "p", "connector": "c"}
IM = {"chat_id": 1, "message_id": 2}


@pytest.mark.parametrize(
    ("call", "kwargs", "field"),
    [
        ("confirm", {**PC, "line": 0, "im": {}}, "line"),
        ("confirm", {**PC, "line": 1, "im": {"chat_id": 1}}, "im.message_id"),
        ("sent", {**PC, "line": 1, "im": IM, "message": {}}, "message.id"),
        ("sent", {**PC, "line": 1, "im": IM, "message": {"id": "x", "date": 1}}, "message.date"),
        ("delivered", {**PC, "message_id": [], "date": 1}, "message_id"),
        ("delivered", {**PC, "message_id": "x", "date": -1}, "date"),
        ("register_portal", {"member_id": "m"}, "domain"),
    ],
)
def test_each_method_refuses_what_the_worker_would(
    call: str, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        getattr(producer, call)(**kwargs)
    assert err.value.field == field


def test_confirm_many_names_the_element_and_honours_the_limit() -> None:
    good = {"portal": "p", "connector": "c", "line": 1, "im": {"chat_id": 1, "message_id": 2}}
    with pytest.raises(InvalidInput) as err:
        producer.confirm_many([good, {**good, "line": "x"}])
    assert err.value.field == "confirmations[1].line"
    small = Producer("redis://127.0.0.1:1/0", confirm_many_max=1)
    with pytest.raises(InvalidInput, match="at most 1"):
        small.confirm_many([good, good])


def test_require_message_id_mirrors_the_workers_setting() -> None:
    strict = Producer("redis://127.0.0.1:1/0", require_message_id=True)
    with pytest.raises(InvalidInput) as err:
        strict.confirm(portal="p", connector="c", line=1, im=IM)
    assert err.value.field == "message.id"


def test_the_validators_import_nothing_beyond_the_base_install() -> None:
    code = textwrap.dedent(
        """
        import sys
        blocked = ("structlog", "requests", "prometheus_client", "cryptography", "jsonschema")
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in blocked:
                    raise ImportError(f"{name} is not in the base install")
        sys.meta_path.insert(0, Block())
        import b24producer, b24producer.events
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELIVERY_", "BITRIX24_"))}
    done = run_python("-c", code, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
