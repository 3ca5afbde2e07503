"""How the CLI looks, through rich's console recording: tables fit the terminal, colour
follows NO_COLOR / FORCE_COLOR and whether output is a terminal, progress bars per instance,
the live views and the chat statistics."""

from __future__ import annotations

import argparse
import io
import re
from collections import deque

from rich.console import Console

from corral.cli import chat, output, pull, status, usage
from corral.cli.importer import render_report
from corral.migrate import convert_litellm
from tests.migrate import configs

ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEALTH = {
    "deployments": [
        {"name": "gpu-box-with-a-long-name", "type": "ollama", "state": "healthy", "in_flight": 2,
         "max_parallel": 4, "latency_ms": 3.2, "loaded_models": ["llama3.2:latest", "qwen3:0.6b"],
         "last_check": "2026-12-01T10:00:00+00:00", "last_error": None},
        {"name": "laptop", "type": "ollama", "state": "ejected", "in_flight": 0, "max_parallel": 4,
         "latency_ms": None, "loaded_models": [], "last_check": "2026-12-01T10:00:01+00:00",
         "last_error": "Upstream 'laptop' is unreachable at 10.0.0.9:11434 (Connection refused). Check it."},
    ]
}  # fmt: skip


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def recording(width: int = 80) -> Console:
    return Console(
        record=True, width=width, force_terminal=True, color_system="truecolor", file=io.StringIO()
    )


def test_a_table_fits_the_terminal_width() -> None:
    for width in (60, 80, 120):
        console = recording(width)
        console.print(status.render(HEALTH, console))
        text = console.export_text()
        assert all(len(line) <= width for line in text.splitlines()), width
        assert "corral fleet: 1 of 2 healthy" in text and "NAME" in text
        assert "laptop" in text and "ejected" in text


def test_colour_on_a_terminal_none_with_no_color_or_piped_and_forced_with_force_color() -> None:
    rows = [["gpu", "healthy"], ["laptop", "ejected"]]
    for env, stream, coloured in (
        ({}, FakeTTY(), True),
        ({"NO_COLOR": "1"}, FakeTTY(), False),
        ({}, io.StringIO(), False),
        ({"FORCE_COLOR": "1"}, io.StringIO(), True),
    ):
        console = output.make_console(stream, env=env)
        output.show(("name", "state"), rows, console=console)
        raw = stream.getvalue()
        assert ("\x1b[32m" in raw) is coloured, env  # healthy in green
        assert "healthy" in ANSI.sub("", raw)


def test_piped_tables_are_plain_columns_for_grep_and_awk() -> None:
    stream = io.StringIO()
    console = output.make_console(stream, env={})
    console.print(status.render(HEALTH, console))
    lines = stream.getvalue().splitlines()
    assert lines[0].split()[:3] == ["NAME", "TYPE", "STATE"]
    assert lines[1].startswith("gpu-box-with-a-long-name ") and "llama3.2:latest, qwen3:0.6b" in lines[1]
    assert not any(ch in stream.getvalue() for ch in "─│┃━\x1b")  # no box, no escape codes
    assert "Connection refused" in lines[2]  # never cut to a terminal width when piped


def test_pull_draws_a_progress_bar_per_instance() -> None:
    console = recording(100)
    bars = pull.progress_bars(console)
    state = pull.Pull(console, bars)
    for line in (
        {"instance": "gpu1", "status": "pulling manifest"},
        {"instance": "gpu2", "status": "pulling manifest"},
        {
            "instance": "gpu1",
            "status": "pulling 6a0746a1ec1a",
            "total": 2_000_000_000,
            "completed": 500_000_000,
        },
        {
            "instance": "gpu2",
            "status": "pulling 6a0746a1ec1a",
            "total": 2_000_000_000,
            "completed": 1_500_000_000,
        },
    ):
        state.update(line)
    console.print(bars.get_renderable())  # the bars as the live display draws them now
    text = console.export_text()
    gpu1 = next(line for line in text.splitlines() if line.startswith("gpu1"))
    gpu2 = next(line for line in text.splitlines() if line.startswith("gpu2"))
    assert "25.0%" in gpu1 and "0.5/2.0 GB" in gpu1
    assert "75.0%" in gpu2 and "1.5/2.0 GB" in gpu2
    assert "━" in gpu1  # the bar itself
    state.update({"status": "success", "instances": ["gpu1", "gpu2"]})
    assert pull.finish("llama3.2", state, console) == 0
    assert "llama3.2: pulled on 2 of 2 instance(s): gpu1, gpu2" in console.export_text()
    assert console.export_svg(title="corral pull").startswith("<svg")


def test_pull_piped_prints_a_line_per_step() -> None:
    stream = io.StringIO()
    console = output.make_console(stream, env={})
    state = pull.Pull(console, None)
    state.update({"instance": "gpu1", "status": "pulling manifest"})
    state.update({"instance": "gpu1", "status": "pulling abc", "total": 10, "completed": 5})
    state.update({"instance": "gpu1", "status": "success"})
    state.update({"error": "pull failed on gpu2: file does not exist", "instances": ["gpu1", "gpu2"]})
    assert pull.finish("phi4", state, console) == 1
    assert stream.getvalue().splitlines() == [
        "gpu1             pulling manifest",
        "gpu1             success",
        "",
        "phi4: pulled on 1 of 2 instance(s): gpu1",
        "  gpu2: file does not exist",
    ]


def test_usage_tail_live_view() -> None:
    console = recording(100)
    recent = deque(
        [usage._row({"at": "2026-12-01T10:00:05Z", "key_id": "abcd1234", "requested_model": "kimi",
                     "provider": "ollama-cloud", "status": 200, "total_tokens": 42, "cost_usd": 0.00042,
                     "latency_ms": 812.5})]
    )  # fmt: skip
    console.print(usage._view(recent, {"requests": 1, "tokens": 42, "cost": 0.00042, "errors": 0}, console))
    text = console.export_text()
    assert "Requests as they finish" in text and "10:00:05" in text and "ollama-cloud" in text
    assert "live 1 requests, 42 tokens, USD 0.000420, 0 errors" in text


def test_chat_statistics_line() -> None:
    turn = chat.Turn("kimi", provider="ollama-cloud", served_model="kimi-k2.5", started=10.0,
                     first_token=10.25, ended=12.25, usage={"completion_tokens": 40})  # fmt: skip
    assert (
        chat.stats_line(turn).plain == "ollama-cloud / kimi-k2.5  ·  TTFT 250 ms  ·  20.0 tok/s  ·  40 tokens"
    )
    estimated = chat.Turn("m", provider="p", started=0.0, first_token=1.0, ended=3.0, chunks=10)
    assert chat.stats_line(estimated).plain.endswith("5.0 tok/s  ·  ~10 tokens")
    assert chat.Turn("m").as_json()["ttft_ms"] is None


def test_import_report_is_grouped_and_coloured() -> None:
    conversion = convert_litellm(
        configs.AZURE_BEDROCK.substitute(openai="http://vllm:8000/v1", ollama="http://gpu1:11434"),
        "litellm.yaml",
    )
    console = recording(120)
    render_report(conversion, console, output="corral.yaml")
    text = console.export_text(clear=False)
    for title in ("Not mapped (", "Changed (", "Mapped ("):
        assert title in text
    assert "line 4" in text and "Check it with: corral check --config corral.yaml" in text
    assert "\x1b[1;31m" in console.export_text(styles=True)  # "Not mapped" in bold red


def test_status_watch_redraws_until_count() -> None:
    class Fake:
        calls = 0

        def get(self, path: str) -> dict[str, object]:
            Fake.calls += 1
            return HEALTH

    console = recording(100)
    args = argparse.Namespace(json=False, count=3, interval=0.0)
    waits: list[float] = []
    assert status.watch(Fake(), args, console, waits.append) == 0  # type: ignore[arg-type]
    assert Fake.calls == 3 and waits == [0.1, 0.1]  # no wait after the last refresh
    assert "corral fleet: 1 of 2 healthy" in console.export_text()
