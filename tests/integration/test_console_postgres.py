# ruff: noqa: F811 - the store_url fixture is imported from test_store_backends
"""The console's API tests again, on a PostgreSQL metrics store (and its token table)."""

from __future__ import annotations

import pytest

from tests.integration.test_store_backends import store_url  # noqa: F401 - fixture
from tests.unit import test_console as api_tests
from tests.unit.console_world import console_env

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_console_api_on_postgres(store_url: str, tmp_path) -> None:
    with console_env(tmp_path, url=store_url) as env:
        assert env["store"].dialect == "postgresql"
        api_tests.test_tenant_isolation_and_admin(env)
        api_tests.test_login_rejects_a_bad_token_and_forms_need_csrf(env)
        api_tests.test_preview_equals_the_recompute_afterwards(env)
        api_tests.test_bot_interactions_and_csv(env)
        api_tests.test_toggle_through_the_page_queues_the_recompute(env)
