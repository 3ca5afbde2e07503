"""Record the CLI's look for the README: ``python -m tests.cli.record`` runs a real session
(a gateway in front of two emulated Ollama instances and the demo provider) through the CLI's
own code on a recording rich console, and writes ``docs/cli/session.svg`` and
``docs/cli/session.txt``."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import httpx
from rich.console import Console

from corral.cli import catalog, chat, importer, pull, status
from corral.cli.client import AdminClient
from corral.migrate import convert_litellm
from tests.emulators.ollama import OllamaEmulator
from tests.migrate import configs
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

OUT = Path(__file__).resolve().parents[2] / "docs" / "cli"
WIDTH = 110


def prompt(console: Console, command: str) -> None:
    console.print()
    console.print(f"[bold green]$[/bold green] [bold]{command}[/bold]")


def session(console: Console, home: Path) -> None:
    gpu1 = OllamaEmulator(registry=[{"name": "gemma3:4b"}])
    gpu2 = OllamaEmulator(registry=[{"name": "gemma3:4b"}])
    gpu2.loaded["qwen3:0.6b:latest"] = 8192
    with ServerThread(gpu1.app) as a, ServerThread(gpu2.app) as b:
        config = make_config(
            {
                "providers": [
                    {"name": "gpu1", "type": "ollama", "base_url": a.url},
                    {"name": "gpu2", "type": "ollama", "base_url": b.url},
                ],
                "models": [{"name": "fast", "targets": ["gpu1/qwen3:0.6b", "gpu2/qwen3:0.6b"]}],
            },
            demo=True,
        )
        with GatewayServer(config, home=home) as gw:
            gw.call(lambda: gw.gateway.health.check_all())
            admin = AdminClient(gw.admin_url, gw.key)
            data = AdminClient(gw.url, gw.key, plane="data")

            prompt(console, "corral status")
            console.print(status.render(admin.get("/admin/health"), console))

            prompt(console, "corral chat fast 'Why do llamas hum?'")
            ask = argparse.Namespace(model="fast", prompt="Why do llamas hum?", temperature=None,
                                     max_tokens=None, system=None, json=False)  # fmt: skip
            chat.once(data, ask, console, [{"role": "user", "content": ask.prompt}])

            prompt(console, "corral pull gemma3:4b")
            bars = pull.progress_bars(console)
            state = pull.Pull(console, bars)
            with data.stream("POST", "/api/pull", {"model": "gemma3:4b"}) as resp:
                lines = [httpx.Response(200, content=raw).json() for raw in resp.iter_lines() if raw.strip()]
            for line in lines:
                if line.get("instance") == "gpu1" or "instance" not in line:
                    state.update(line)
            halfway = [x for x in lines if x.get("instance") == "gpu2" and x.get("total")]
            state.update(halfway[len(halfway) // 2])
            console.print(bars.get_renderable())  # the bars mid-pull, as the live display draws them
            for line in lines:
                if line.get("instance") == "gpu2":
                    state.update(line)
            pull.finish("gemma3:4b", state, console)

            prompt(
                console, "corral catalog import gpu1 --yes; corral catalog set gpu1 qwen3:0.6b --input 0.05"
            )
            admin.request("POST", "/admin/catalog/import", {"provider": "gpu1"})
            admin.request(
                "PATCH", "/admin/catalog/gpu1/qwen3:0.6b", {"input_price": 0.05, "output_price": 0.1}
            )
            entries = admin.get("/admin/catalog?provider=gpu1")["data"]
            console.print(catalog.table_for(entries, console))

    prompt(console, "corral import litellm config.yaml -o corral.yaml --quiet")
    text = configs.AZURE_BEDROCK.substitute(openai="http://vllm:8000/v1", ollama="http://gpu1:11434")
    importer.render_report(convert_litellm(text, "config.yaml"), console, output="corral.yaml", quiet=True)


def main() -> None:
    import tempfile

    OUT.mkdir(parents=True, exist_ok=True)
    console = Console(  # as make_console builds it on a terminal: no highlighting of numbers and the like
        record=True,
        width=WIDTH,
        force_terminal=True,
        color_system="truecolor",
        file=io.StringIO(),
        highlight=False,
    )
    with tempfile.TemporaryDirectory() as home:
        session(console, Path(home))
    (OUT / "session.txt").write_text(console.export_text(clear=False))
    (OUT / "session.svg").write_text(console.export_svg(title="corral"))


if __name__ == "__main__":
    main()
