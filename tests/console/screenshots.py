"""Write a screenshot of every console page (1440x900) to docs/console/: run by
``scripts/console-screenshots``. The gateway gets a little traffic first so the pages have
something to show: usage from 14 users (the usage page, grouped by user, draws the first ten
and "other"), and a model that fails on one instance (marked failed there, at the model level)."""

from __future__ import annotations

import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from corral.usage import UsageRecord
from tests.console.browser import PAGES, Console, chromium, missing
from tests.console.conftest import Stack, running_stack, usage_written, wait_until
from tests.emulators.common import Fault

OUT = Path(__file__).resolve().parents[2] / "docs" / "console"
PRICE = (0.15, 0.60)  # gpt-4o-mini's list price, USD per million input and output tokens


SERVED = [
    ("gpu-a", "chat", "llama3.2"),
    ("gpu-b", "chat", "llama3.2"),
    ("openai", "openai/gpt-4o-mini", "gpt-4o-mini"),
]
MODELS = ["chat", "chat", "openai/gpt-4o-mini", "gpu-b/qwen3:0.6b", "chat", "openai/gpt-4o-mini"]
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
         "niaj", "olivia", "peggy"]  # fmt: skip


def record(i: int, rng: random.Random, now: datetime) -> UsageRecord:
    provider, requested, model = SERVED[rng.randrange(3)]
    prompt, completion = rng.randrange(50, 900), rng.randrange(20, 400)
    latency = rng.uniform(200, 2500) * (0.5 if provider == "openai" else 1)
    failed = rng.random() < 0.02
    cost = (prompt * PRICE[0] + completion * PRICE[1]) / 1e6 if provider == "openai" else 0.0
    return UsageRecord(
        request_id=f"req_fill{i:08d}", at=now - timedelta(seconds=rng.uniform(30, 3600)),
        requested_model=requested, key_id="master", user=USERS[min(int(rng.expovariate(0.25)), 13)],
        served_model=model, provider=provider, instance=provider, attempts=1, streamed=True,
        status=502 if failed else 200, error_class="UpstreamError" if failed else None,
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        cost_usd=cost, latency_ms=latency, ttft_ms=latency / 5, upstream_ms=latency * 0.98, overhead_ms=0.4,
    )  # fmt: skip


def traffic(stack: Stack, backfill: int = 900) -> None:
    """Usage spread over the last hour (as if the gateway had been busy), then a few real calls."""
    gw = stack.gateway
    assert gw.app is not None
    writer = gw.app.parts.accountant.writer
    assert writer is not None
    before = usage_written(stack)
    rng, now = random.Random(3), datetime.now(UTC)
    for i in range(backfill):
        writer.submit(record(i, rng, now))
    stack.gpu_b.model_faults["qwen3:0.6b"] = Fault("status", status=500, message="model runner crashed")
    for i, model in enumerate(MODELS * 3):
        body = {"model": model, "messages": [{"role": "user", "content": f"question {i}"}], "user": "alice"}
        httpx.post(gw.v1 + "/chat/completions", json=body, headers=gw.headers(), timeout=20)
    stack.gpu_b.model_faults.clear()  # qwen3 stays marked failed on gpu-b for its back-off
    stack.key(name="ci-runner", owner="alice", scope="user", models=["chat"], max_budget=5, rpm=60)
    stack.key(name="ops", scope="admin")
    wait_until(lambda: usage_written(stack) >= before + backfill + 18)


def main() -> int:
    why = missing()
    if why:
        print(f"console-screenshots: {why}", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as home,
        running_stack(Path(home), price=PRICE, hostile=False) as stack,
        chromium() as browser,
    ):
        traffic(stack)
        console = Console(browser, stack.admin)
        console.page.goto("/console")
        console.page.get_by_label("Key").wait_for()
        console.page.screenshot(path=str(OUT / "sign-in.png"))
        console.sign_in(stack.gateway.key)
        for name in PAGES:
            page = console.open(name)
            if name == "playground":
                page.get_by_label("Compare with a second model").check()
                page.get_by_label("Second model", exact=True).select_option("openai/gpt-4o-mini")
                page.get_by_label("Message").fill("Say hello in one line.")
                page.get_by_role("button", name="Send").click()
                page.locator(".meta").nth(1).get_by_text("TTFT").wait_for()
            if name == "routing":
                page.get_by_label("Model, alias or corral/<level>").fill("chat")
                page.get_by_role("button", name="Show the plan").click()
                page.locator("ol.plan").wait_for()
            if name == "usage":
                page.get_by_label("Group by").select_option("user")
                page.get_by_test_id("usage-top-note").get_by_text("other").wait_for()
            page.wait_for_timeout(300)  # let charts finish drawing before the picture
            page.screenshot(path=str(OUT / f"{name}.png"))
            print(f"wrote {OUT / name}.png")
        if console.errors:
            print(
                "console-screenshots: the page logged errors:\n  " + "\n  ".join(console.errors),
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
