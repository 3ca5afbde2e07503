"""Property-based fuzzing of the live admin API from its own /admin/openapi.json (schemathesis):
no request, valid or not, gets a server error, and every answer matches the document.

Every check runs except ``positive_data_acceptance``: a document cannot say that an alias
target must name an existing provider, so schema-valid input may still be refused (with a
400 that says why). Each operation is a test of its own, with a bounded number of examples
in each mode (valid and invalid input), derandomized so a run is repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from corral.http.admin.openapi import document
from tests.emulators.ollama import OllamaEmulator
from tests.http.admin.conftest import unthrottled, yaml_config
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

EXAMPLES = 40  # per operation and mode
OPERATIONS = [(method.upper(), path) for path, ops in document()["paths"].items() for method in ops]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    home: Path = tmp_path_factory.mktemp("home")
    with (
        ServerThread(OllamaEmulator().app) as upstream,
        GatewayServer(make_config(yaml_config(upstream.url), demo=True), home=home) as server,
    ):
        yield unthrottled(server)


@pytest.fixture(scope="module")
def admin_api(gateway: GatewayServer) -> OpenApiSchema:
    """The document as the live server serves it."""
    schema = schemathesis.openapi.from_url(
        gateway.admin_url + "/admin/openapi.json", headers=gateway.headers()
    )
    schema.config.update(base_url=gateway.admin_url)
    return schema


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_error_and_answers_match_the_document(
    admin_api: OpenApiSchema, gateway: GatewayServer, method: str, path: str
) -> None:
    operation = admin_api[path][method]
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=strategy)
    @settings(
        max_examples=2 * EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case[Any]) -> None:
        case.call_and_validate(headers=gateway.headers(), excluded_checks=[positive_data_acceptance])

    run()
