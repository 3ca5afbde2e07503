"""The console in a real browser (Debian's Chromium, driven by Playwright) against a real
gateway with emulated Ollama and OpenAI upstreams: the operator's and the user's journeys,
XSS probes that must stay inert, CSRF, keyboard-only use and axe-core on every page.

Runs whenever Chromium and Playwright are installed; with CI=true their absence is a failure,
elsewhere a skip that says what to install."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.console.browser import PAGES, Console, chromium, missing
from tests.console.conftest import XSS, Stack, usage_written, wait_until
from tests.emulators.common import Fault

_why = missing()
if _why is not None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests must run in CI: {_why}", pytrace=False)
    pytest.skip(f"browser tests skipped: {_why}", allow_module_level=True)

TIMEOUT = 15_000  # ms, for any single wait in the page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def admin(browser: Any, stack: Stack) -> Iterator[Console]:
    console = Console(browser, stack.admin)
    console.page.set_default_timeout(TIMEOUT)
    console.sign_in(stack.gateway.key)
    yield console
    assert console.dialogs == [], console.dialogs  # nothing ever calls alert() or confirm()
    assert console.errors == [], console.errors
    console.close()


def test_signing_in_keeps_the_key_out_of_the_url_storage_and_page(admin: Console, stack: Stack) -> None:
    page = admin.page
    assert stack.gateway.key not in page.url
    stored = page.evaluate("() => JSON.stringify([localStorage, sessionStorage, document.cookie])")
    assert stack.gateway.key not in stored and "corral_session" not in stored  # HttpOnly: not readable
    assert stack.gateway.key not in page.content()
    assert page.get_by_role("link", name="Keys").is_visible()


def test_add_an_instance_with_the_keyboard_test_it_and_see_its_models(admin: Console, stack: Stack) -> None:
    page = admin.open("instances")
    page.get_by_role("button", name="Add instance").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    assert page.evaluate("() => document.activeElement.closest('dialog') !== null")  # focus moved in
    page.keyboard.type("spare-gpu")  # the first field (Name) has focus
    page.keyboard.press("Tab")  # type
    page.keyboard.press("Tab")  # base URL
    page.keyboard.type(stack.spare_url)
    page.keyboard.press("Enter")  # submits the form
    dialog.wait_for(state="detached")
    row = page.get_by_role("row").filter(has_text="spare-gpu")
    row.wait_for()
    row.get_by_role("button", name="Test").click()
    row.get_by_text("test OK").wait_for()
    assert "1 models" in row.inner_text()
    page = admin.open("models")
    gemma = page.get_by_role("row").filter(has_text="gemma3:4b")
    gemma.wait_for()
    text = gemma.inner_text()
    assert "spare-gpu" in text and "vision" in text and "131,072" in text


def test_a_model_loaded_on_one_instance_and_not_another(admin: Console) -> None:
    page = admin.open("models")
    row = page.get_by_role("row").filter(has_text="llama3.2:latest")
    loaded = row.locator("li.loaded")
    assert loaded.count() == 1 and loaded.inner_text().startswith("gpu-a")
    assert "8,192 ctx" in loaded.inner_text()
    assert "gpu-b" in row.locator("li:not(.loaded)").inner_text()


def test_pull_a_model_with_a_progress_bar_per_instance(admin: Console, stack: Stack) -> None:
    page = admin.open("models")
    page.get_by_label("Model to pull").fill("mistral:7b")
    for box in page.locator("fieldset.targets input").all():
        box.set_checked(box.get_attribute("value") in ("gpu-a", "gpu-b"))
    page.get_by_role("button", name="Pull").click()
    page.get_by_text("mistral:7b: pulled on gpu-a, gpu-b").first.wait_for()
    for name in ("gpu-a", "gpu-b"):
        bar = page.get_by_label(f"{name} progress")
        assert bar.evaluate("b => b.value === b.max && b.max > 0")
    assert "mistral:7b" in stack.gpu_a.models and "mistral:7b" not in stack.spare.models


def test_playground_streams_with_the_keyboard_and_shows_who_answered(admin: Console) -> None:
    page = admin.open("playground")
    page.get_by_label("Model", exact=True).select_option("chat")
    page.get_by_label("Message").focus()
    page.keyboard.type("hello from the keyboard")
    page.keyboard.press("Control+Enter")
    meta = page.get_by_test_id("answer-meta").last
    meta.get_by_text("TTFT").wait_for()
    assert "Echo: hello from the keyboard" in page.locator(".answer-text").last.inner_text()
    text = meta.inner_text()
    assert "provider gpu-a" in text and "attempts 1" in text and "no fallback" in text
    assert "in ·" in text and "tokens/s" in text


def test_playground_shows_a_fallback(admin: Console, stack: Stack) -> None:
    stack.gpu_b.model_faults["qwen3:0.6b"] = Fault("status", status=500, message="down for maintenance")
    try:
        page = admin.open("playground")
        page.get_by_label("Model", exact=True).select_option("flaky")
        page.get_by_label("Message").fill("are you there?")
        page.get_by_role("button", name="Send").click()
        meta = page.get_by_test_id("answer-meta").last
        meta.get_by_text("fallback openai/gpt-4o-mini").wait_for()
        assert "provider openai" in meta.inner_text() and "attempts 2" in meta.inner_text()
    finally:
        stack.gpu_b.model_faults.clear()


def model_marked(stack: Stack, instance: str, model: str) -> dict[str, Any] | None:
    health = httpx.get(stack.admin + "/admin/health", headers=stack.gateway.headers(), timeout=10).json()
    found: dict[str, Any] | None = next(d for d in health["deployments"] if d["name"] == instance)[
        "models"
    ].get(model)
    return found


def test_a_model_failed_on_one_instance_is_shown_on_that_instance_only(admin: Console, stack: Stack) -> None:
    """The model level of health: qwen3 fails on gpu-b (its error text a markup probe), gpu-b
    keeps serving its other models; the overview, the instances and the models pages say so."""
    stack.gpu_b.model_faults["qwen3:0.6b"] = Fault("status", status=500, message=f"runner crashed {XSS}")
    try:
        resp = httpx.post(
            stack.gateway.v1 + "/chat/completions",
            json={"model": "flaky", "messages": [{"role": "user", "content": "hi"}]},
            headers=stack.gateway.headers(),
            timeout=20,
        )
        assert resp.status_code == 200 and resp.headers["x-corral-fallback"] == "openai/gpt-4o-mini"
        wait_until(lambda: (model_marked(stack, "gpu-b", "qwen3:0.6b") or {}).get("state") == "ejected")
        assert model_marked(stack, "gpu-a", "qwen3:0.6b") is None
        failures = (model_marked(stack, "gpu-b", "qwen3:0.6b") or {})["failures"]
    finally:
        stack.gpu_b.model_faults.clear()

    page = admin.open("overview")
    page.get_by_test_id("tile-model-health").get_by_text("model failed here: qwen3:0.6b").wait_for()
    assert page.get_by_role("article", name="gpu-b: healthy").is_visible()  # the instance itself serves on

    page = admin.open("instances")
    row = page.get_by_role("row").filter(has=page.get_by_text("gpu-b", exact=True))
    line = row.get_by_test_id("model-health")
    line.wait_for()
    text = line.inner_text()
    assert (
        "model failed" in text and "qwen3:0.6b" in text and "until" in text and f"{failures} failure" in text
    )
    assert XSS in text and line.locator("img").count() == 0  # the upstream's error, as text
    other = page.get_by_role("row").filter(has=page.get_by_text("gpu-a", exact=True))
    assert other.get_by_text("every model serving").is_visible()

    page = admin.open("models")
    row = page.get_by_role("row").filter(has=page.get_by_role("strong").get_by_text("qwen3:0.6b", exact=True))
    on_b = row.locator("ul.on li").filter(has_text="gpu-b")
    on_b.get_by_test_id("model-health").wait_for()
    assert "model failed" in on_b.inner_text() and "until" in on_b.inner_text()
    for li in row.locator("ul.on li").all():
        if "gpu-b" not in li.inner_text():
            assert li.get_by_test_id("model-health").count() == 0
    assert page.locator("img").count() == 0


def test_the_usage_chart_by_user_draws_the_top_ten_and_other(admin: Console, stack: Stack) -> None:
    before = usage_written(stack)
    for i in range(12):
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "user": f"top-user-{i:02d}"}
        resp = httpx.post(stack.gateway.v1 + "/chat/completions", json=body, headers=stack.gateway.headers())
        assert resp.status_code == 200
    wait_until(lambda: usage_written(stack) >= before + 12)
    page = admin.open("usage")
    page.get_by_label("Group by").select_option("user")
    note = page.get_by_test_id("usage-top-note")
    note.get_by_text("are added up in “other”").wait_for()
    assert note.inner_text().startswith("The 10 users with the highest cost")
    legend = page.locator(".chart .u-legend")
    legend.get_by_text("other (", exact=False).wait_for()
    assert legend.locator(".u-series").count() == 1 + 11  # the x axis, ten users and "other"


def test_a_key_created_copied_used_seen_in_usage_then_revoked(admin: Console, stack: Stack) -> None:
    page = admin.open("keys")
    page.get_by_role("button", name="Create key").click()
    page.get_by_label("Name").fill("browser-made")
    page.get_by_role("button", name="Create", exact=True).click()
    page.get_by_test_id("new-key").wait_for()
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    key = page.evaluate("() => navigator.clipboard.readText()")
    assert key.startswith("gw_") and key == page.get_by_test_id("new-key").inner_text()
    page.get_by_role("button", name="Done").click()
    before = usage_written(stack)
    client = openai.OpenAI(base_url=stack.gateway.v1, api_key=key, max_retries=0, timeout=20)
    answer = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], user="browser-probe-user"
    )
    assert answer.choices[0].message.content == "Echo: hi"
    wait_until(lambda: usage_written(stack) > before)
    page = admin.open("usage")
    page.get_by_role("cell", name="browser-probe-user").first.wait_for()
    page = admin.open("keys")
    row = page.get_by_role("row").filter(has_text="browser-made")
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    row.wait_for(state="detached")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "again"}])


def test_a_user_key_sees_only_its_own_console(browser: Any, stack: Stack) -> None:
    key, _ = stack.key(name="alice's key", scope="user", models=["chat"], max_budget=3)
    console = Console(browser, stack.admin)
    console.page.set_default_timeout(TIMEOUT)
    page = console.sign_in(key).page
    links = page.get_by_role("navigation", name="Pages").get_by_role("link").all_inner_texts()
    assert links == ["My usage", "Playground"]
    page.goto("/console#/keys")  # not one of its pages: it gets its own view
    page.locator('main[data-page="mine"]').wait_for()
    page.get_by_text("of $3.00").wait_for()
    code = page.evaluate(
        """() => fetch('/admin/keys', {headers: {'X-CSRF-Token': localStorage.getItem('corral.csrf')}})
              .then(r => r.json()).then(b => b.error.code)"""
    )
    assert code == "admin_required"
    page = console.open("playground")
    assert page.get_by_label("Model", exact=True).locator("option").all_inner_texts() == ["chat"]
    page.get_by_label("Message").fill("only mine")
    page.get_by_role("button", name="Send").click()
    page.get_by_test_id("answer-meta").last.get_by_text("TTFT").wait_for()
    assert console.dialogs == [] and console.errors == []
    console.close()


def test_xss_probes_stay_inert_and_are_shown_as_text(admin: Console, stack: Stack) -> None:
    headers = stack.gateway.headers()
    refused = httpx.post(
        stack.admin + "/admin/providers", headers=headers,
        json={"name": XSS, "type": "ollama", "base_url": stack.spare_url},
    )  # fmt: skip
    assert refused.status_code == 400  # a provider name cannot carry markup at all
    alias = {"name": XSS, "target": "gpu-a/llama3.2"}
    assert httpx.post(stack.admin + "/admin/aliases", headers=headers, json=alias).status_code == 201
    stack.key(name=XSS, owner=XSS, scope="user")
    before = usage_written(stack)
    httpx.post(
        stack.gateway.v1 + "/chat/completions", headers=headers, timeout=20,
        json={"model": "chat", "messages": [{"role": "user", "content": XSS}], "user": XSS},
    )  # fmt: skip
    wait_until(lambda: usage_written(stack) > before)
    for name in ("models", "keys", "usage", "routing"):
        page = admin.open(name)
        page.get_by_text(XSS).locator("visible=true").first.wait_for()  # shown, as text
        assert page.locator("img[src='x']").count() == 0  # never parsed as markup
    page = admin.open("playground")
    page.get_by_label("Model", exact=True).select_option(XSS)
    page.get_by_label("Message").fill(XSS)
    page.get_by_role("button", name="Send").click()
    page.get_by_test_id("answer-meta").last.get_by_text("TTFT").wait_for()
    assert page.locator("img[src='x']").count() == 0
    assert f"Echo: {XSS}" in page.locator(".answer-text").last.inner_text()
    # the admin fixture asserts that no alert() (or any dialog) fired


def test_posts_without_the_csrf_token_are_refused(admin: Console) -> None:
    page = admin.page
    status = page.evaluate(
        """() => fetch('/admin/keys', {method: 'POST', credentials: 'same-origin',
              headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: 'forged'})})
              .then(r => r.status)"""
    )
    assert status == 403
    assert page.evaluate("() => fetch('/admin/keys').then(r => r.status)") == 403  # not even a GET
    names = page.evaluate(
        """() => fetch('/admin/keys', {headers: {'X-CSRF-Token': localStorage.getItem('corral.csrf')}})
              .then(r => r.json()).then(b => b.data.map(k => k.name))"""
    )
    assert "forged" not in names


def test_the_session_survives_a_reload_and_a_second_tab_and_ends_in_both(admin: Console) -> None:
    admin.page.reload()
    admin.page.get_by_role("navigation", name="Pages").wait_for()
    second = admin.context.new_page()
    second.goto("/console#/keys")
    second.locator('main[data-page="keys"]').wait_for()
    admin.page.get_by_role("button", name="Sign out").click()
    admin.page.get_by_label("Key").wait_for()
    second.get_by_label("Key").wait_for()  # it followed: the token it shared is gone
    assert second.evaluate("() => localStorage.getItem('corral.csrf')") is None
    second.close()


@pytest.mark.parametrize("name", PAGES)
def test_no_serious_accessibility_violation(admin: Console, name: str) -> None:
    admin.open(name)
    assert admin.axe() == []


def test_the_sign_in_page_is_accessible(browser: Any, stack: Stack) -> None:
    console = Console(browser, stack.admin)
    console.page.goto("/console")
    console.page.get_by_label("Key").wait_for()
    assert console.axe() == []
    console.close()
