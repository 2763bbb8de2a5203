"""Safety checks of `lancemem serve`: Host/Origin rules, their log lines, refused starts.

The HTTP tests run the real server as a subprocess on 127.0.0.1 (see
``http_server``); non-loopback binds are tested through ``transport_security``
so that no test listens beyond this machine.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lancemem.core.errors import ValidationError
from lancemem.serving.serve import transport_security
from tests.test_mcp_transports import HEADERS, INITIALIZE, http_server, serve_args

LOOPBACK = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]


def origins_of(hosts: list[str]) -> list[str]:
    return [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]


def test_remote_bind_keeps_protection_with_the_allowed_hosts() -> None:
    security = transport_security("0.0.0.0", allow_remote=True,
                                  allowed_hosts=["Memory.Example.com", "10.0.0.5:8765"])
    assert security.enable_dns_rebinding_protection
    hosts = [*LOOPBACK, "memory.example.com", "memory.example.com:*", "10.0.0.5:8765"]
    assert security.allowed_hosts == hosts
    assert security.allowed_origins == origins_of(hosts)


def test_a_specific_bind_address_is_an_allowed_host() -> None:
    security = transport_security("10.0.0.5", allow_remote=True)
    assert security.enable_dns_rebinding_protection
    assert security.allowed_hosts == [*LOOPBACK, "10.0.0.5", "10.0.0.5:*"]
    v6 = transport_security("fd00::5", allow_remote=True, allowed_hosts=["memory.test"])
    assert v6.allowed_hosts[-2:] == ["[fd00::5]", "[fd00::5]:*"]
    assert "https://[fd00::5]:*" in v6.allowed_origins


def test_loopback_bind_accepts_allowed_hosts_too() -> None:
    security = transport_security("127.0.0.1", allow_remote=False, allowed_hosts=["memory.test"])
    assert security.allowed_hosts == [*LOOPBACK, "memory.test", "memory.test:*"]


def warnings_naming(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and text in r.getMessage()]


def test_wildcard_bind_without_allowed_hosts_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lancemem"):
        security = transport_security("0.0.0.0", allow_remote=True)
    assert security.enable_dns_rebinding_protection
    assert security.allowed_hosts == LOOPBACK
    [warning] = warnings_naming(caplog, "--allowed-host")
    assert "only loopback Host headers" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lancemem"):
        transport_security("0.0.0.0", allow_remote=True, allowed_hosts=["memory.test"])
        transport_security("10.0.0.5", allow_remote=True)
    assert warnings_naming(caplog, "--allowed-host") == []


def test_bad_allowed_host_is_refused() -> None:
    with pytest.raises(ValidationError, match=re.escape("--allowed-host 'https://memory.test/'")):
        transport_security("0.0.0.0", allow_remote=True, allowed_hosts=["https://memory.test/"])


def probe(transport: str, url: str, headers: dict[str, str]) -> int:
    """Status of one request with ``headers`` (an SSE stream is closed once answered)."""
    if transport == "sse":
        with httpx.stream("GET", url, headers=headers, timeout=10) as response:
            return response.status_code
    return httpx.post(url, json=INITIALIZE, headers={**HEADERS, **headers},
                      timeout=10).status_code


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_allowed_host_is_accepted_and_foreign_ones_refused(tmp_path: Path,
                                                           transport: str) -> None:
    with http_server(tmp_path, transport, "--allowed-host", "memory.test") as url:
        port = re.search(r":(\d+)/", url).group(1)
        for ok in ({"Host": f"memory.test:{port}"}, {"Host": "memory.test"},
                   {"Host": f"memory.test:{port}", "Origin": f"http://memory.test:{port}"},
                   {"Host": f"memory.test:{port}", "Origin": "https://memory.test"},
                   {"Origin": f"http://127.0.0.1:{port}"}):
            assert probe(transport, url, ok) == 200, ok
        assert probe(transport, url, {"Host": "evil.example"}) == 421
        assert probe(transport, url, {"Host": f"evil.example:{port}"}) == 421
        assert probe(transport, url, {"Host": f"memory.test:{port}",
                                      "Origin": "http://evil.example"}) == 403


@pytest.mark.parametrize(("transport", "label"),
                         [("sse", "an SSE"), ("streamable-http", "a streamable HTTP")])
def test_each_refusal_logs_one_warning_and_no_traceback(tmp_path: Path, transport: str,
                                                        label: str) -> None:
    with http_server(tmp_path, transport) as url:
        assert probe(transport, url, {"Origin": "http://evil.example"}) == 403
        assert probe(transport, url, {"Host": "evil.example"}) == 421
    [log_path] = tmp_path.glob(f"{transport}-*.log")
    log = log_path.read_text()
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "evil.example" in line]
    assert len(lines) == 2, log
    origin, host = lines
    assert "WARNING" in origin and "WARNING" in host
    assert origin.endswith(f"refused {label} request from Origin http://evil.example "
                           "(not an allowed origin)")
    assert f"refused {label} request with Host evil.example (not an allowed host" in host


def run_serve(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``lancemem serve`` on stdio with no client: it exits at once either way."""
    return subprocess.run([sys.executable, *serve_args(tmp_path / "db", *args)],
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env={**os.environ, **env})


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [({"LANCEMEM_PIN_USER_ID": "alice"}, ["--user-id", "bob"],
      ["LANCEMEM_PIN_USER_ID", "--user-id"]),
     ({"LANCEMEM_PIN_USER_ID": "alice"}, ["--pin-user-id", "bob"],
      ["LANCEMEM_PIN_USER_ID", "--pin-user-id"]),
     ({"LANCEMEM_PIN_AGENT_ID": "bot", "LANCEMEM_AGENT_ID": "other"}, [],
      ["LANCEMEM_PIN_AGENT_ID", "LANCEMEM_AGENT_ID"]),
     ({"LANCEMEM_PIN_RUN_ID": "r1"}, ["--run-id", "r2"], ["LANCEMEM_PIN_RUN_ID", "--run-id"]),
     ({}, ["--user-id", "bob", "--pin-user-id", "alice"], ["--pin-user-id", "--user-id"])],
)
def test_contradicted_pins_stop_the_server_at_start(tmp_path: Path, env: dict[str, str],
                                                    args: list[str], named: list[str]) -> None:
    result = run_serve(tmp_path, *args, env=env)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("lancemem: VALIDATION_005: ")
    assert all(name in line for name in named), line


def test_invalid_allowed_host_stops_the_server_at_start(tmp_path: Path) -> None:
    result = run_serve(tmp_path, "--transport", "streamable-http", "--port", "0",
                       "--allowed-host", "http://memory.test/", env={})
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("lancemem: VALIDATION_005: --allowed-host 'http://memory.test/'")
    assert "memory.example.com" in line


def raw_status(url: str, headers: list[tuple[str, str]], body: bytes | None = None) -> int:
    """Status of one POST with exactly these headers (repeats kept, Host as given)."""
    request = httpx.Request("POST", url, content=body or b"{}",
                            headers=[("Content-Type", "application/json"),
                                     ("Accept", "application/json, text/event-stream"),
                                     *headers])
    with httpx.Client(timeout=30) as client:
        return client.send(request).status_code


def test_only_a_port_may_follow_an_allowed_name_and_case_does_not_matter(tmp_path: Path) -> None:
    with http_server(tmp_path, "streamable-http", "--allowed-host", "memory.test") as url:
        port = re.search(r":(\d+)/", url).group(1)
        for host in ("localhost:80@evil.example", "localhost:evil.example",
                     "127.0.0.1:1.evil.example", "memory.test:1@evil.example",
                     "memory.test:", f"memory.test:{port}x"):
            assert raw_status(url, [("Host", host)]) == 421, host
        for origin in ("http://localhost:1@evil.example", "https://memory.test:1@evil.example"):
            assert raw_status(url, [("Host", f"memory.test:{port}"),
                                    ("Origin", origin)]) == 403, origin
        for host, origin in ((f"MEMORY.TEST:{port}", "https://Memory.Test"),
                             (f"LOCALHOST:{port}", f"http://LOCALHOST:{port}")):
            status = probe("streamable-http", url, {"Host": host, "Origin": origin})
            assert status == 200, (host, origin)


def test_every_origin_header_is_checked(tmp_path: Path) -> None:
    with http_server(tmp_path, "streamable-http") as url:
        port = re.search(r":(\d+)/", url).group(1)
        local = f"http://127.0.0.1:{port}"
        for origins in ([local, "http://evil.example"], ["http://evil.example", local]):
            headers = [("Origin", origin) for origin in origins]
            assert raw_status(url, headers) == 403, origins


def test_a_body_over_the_transport_limit_is_413_and_logged(tmp_path: Path) -> None:
    with http_server(tmp_path, "streamable-http") as url:
        assert raw_status(url, [], body=b" " * (4 * 1024 * 1024 + 1)) == 413
    [log_path] = tmp_path.glob("streamable-http-*.log")
    log = log_path.read_text()
    assert "Traceback" not in log
    [line] = [line for line in log.splitlines() if "413" in line]
    assert "WARNING" in line and "4 MiB" in line
