"""The local agent's credential proxy (modal_worker.keyproxy): the agent's environment
holds a placeholder; the proxy admits only that placeholder, forwards with the real
credential and streams the answer back."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from modal_worker import keyproxy
from parhelia.credentials import CREDENTIAL_VARS
from parhelia.sandbox import PLACEHOLDER_PREFIX
from tests.fake_anthropic import FakeAnthropic, reply, text

REAL = "sk-ant-api03-REAL-KEY-never-in-the-sandbox"
BODY = {"model": "claude-test", "max_tokens": 64, "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "Write", "description": "w", "input_schema": {"type": "object"}}]}


def _post(url: str, headers: dict[str, str], body: Any = BODY,
          chunked: bool = False) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    payload = json.dumps(body).encode()
    try:
        if chunked:
            conn.putrequest("POST", "/v1/messages?beta=true")
            for k, v in {"content-type": "application/json", "transfer-encoding": "chunked",
                         **headers}.items():
                conn.putheader(k, v)
            conn.endheaders()
            for piece in (payload[:10], payload[10:]):
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.request("POST", "/v1/messages?beta=true", body=payload,
                         headers={"content-type": "application/json", **headers})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("variable", CREDENTIAL_VARS)
def test_the_agent_gets_a_placeholder_and_the_api_gets_the_credential(variable: str) -> None:
    with FakeAnthropic([reply(text("streamed through"))]) as fake:
        env = {variable: REAL, keyproxy.BASE_URL_VAR: fake.url, "PATH": "/usr/bin"}
        proxy = keyproxy.start(env)
        assert proxy is not None
        try:
            agent = proxy.agent_env(env)
            assert REAL not in json.dumps(agent)
            assert agent[variable].startswith(PLACEHOLDER_PREFIX)
            assert [k for k in CREDENTIAL_VARS if k in agent] == [variable]
            header = ({"x-api-key": agent[variable]} if variable == "ANTHROPIC_API_KEY"
                      else {"authorization": f"Bearer {agent[variable]}"})
            for chunked in (False, True):
                status, raw = _post(agent[keyproxy.BASE_URL_VAR], header, chunked=chunked)
                assert status == 200 and b"text_delta" in raw and b"event: message_stop" in raw
            sent = fake.requests
            assert len(sent) == 2
            assert all(r.api_key_is(REAL) if variable == "ANTHROPIC_API_KEY"
                       else r.bearer_token_is(REAL) for r in sent)
            assert sent[0].json["messages"] == BODY["messages"]
        finally:
            proxy.close()


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "sk-guess"},
                                     {"x-api-key": PLACEHOLDER_PREFIX + "0" * 48},
                                     {"authorization": "Bearer whatever"}])
def test_a_request_without_this_tasks_placeholder_reaches_nothing(
        headers: dict[str, str]) -> None:
    with FakeAnthropic() as fake:
        proxy = keyproxy.start({"ANTHROPIC_API_KEY": REAL, keyproxy.BASE_URL_VAR: fake.url})
        assert proxy is not None
        try:
            status, raw = _post(proxy.url, headers)
            assert status == 401 and b"placeholder" in raw and REAL.encode() not in raw
            assert fake.requests == []
        finally:
            proxy.close()


def test_an_unreachable_api_is_a_502_not_a_hang() -> None:
    with FakeAnthropic() as fake:
        dead = fake.url
    proxy = keyproxy.start({"ANTHROPIC_API_KEY": REAL, keyproxy.BASE_URL_VAR: dead})
    assert proxy is not None
    try:
        status, raw = _post(proxy.url, {"x-api-key": proxy.placeholder})
        assert status == 502 and REAL.encode() not in raw
    finally:
        proxy.close()
