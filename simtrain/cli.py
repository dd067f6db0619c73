"""The ``simtrain`` command: run the local stack, submit jobs, watch them."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from simtrain.client import GatewayClient, GatewayError
from simtrain.settings import Settings
from simtrain.stack import LocalStack, StackError

app = typer.Typer(help="simtrain: is this dataset fit for GPT-style training?", no_args_is_help=True)
console = Console(soft_wrap=True)

DEMO_CORPUS = Path(__file__).resolve().parent.parent / "data_service" / "demo" / "tiny.txt"
GatewayOpt = Annotated[
    str, typer.Option("--gateway", envvar="SIMTRAIN_GATEWAY_URL", help="Gateway base URL.")
]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="SIMTRAIN_API_TOKEN", help="API token.")]
DEFAULT_GATEWAY = "http://127.0.0.1:8000"


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the stack is stopped the same way as on Ctrl-C."""

    def handler(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _start_stack(settings: Settings, port: int) -> LocalStack:
    console.print(f"[bold]starting the local stack[/] (logs in {settings.state_dir / 'logs'})")
    try:
        stack = LocalStack(settings, gateway_port=port).start()
    except StackError as e:
        console.print(f"[red]could not start the stack:[/] {e}")
        raise typer.Exit(1) from None
    console.print(f"  redis         {stack.redis_kind}")
    console.print(f"  data service  {stack.data_service_addr}")
    console.print(f"  gateway       {stack.gateway_url}  (API docs: {stack.gateway_url}/docs)")
    return stack


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Gateway port (0 picks a free one).")] = 8000,
) -> None:
    """Start Redis (if needed), the data service, a trainer worker and the gateway; Ctrl-C stops all."""
    _exit_on_sigterm()
    stack = _start_stack(Settings(), port)
    try:
        console.print("[green]ready[/]; press Ctrl-C to stop")
        while all(child.process.poll() is None for child in stack.children):
            time.sleep(0.5)
        console.print("[red]a service exited; stopping the stack[/]")
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        stack.stop()


def demo_spec(max_iters: int) -> dict[str, Any]:
    return {
        "dataset": {"module": "text", "source": "tiny.txt", "tokenizer": "char"},
        "model": {"model_type": "gpt-nano"},
        "training": {
            "max_iters": max_iters,
            "batch_size": 32,
            "block_size": 64,
            "learning_rate": 5e-3,
            "eval_interval": 100,
            "eval_iters": 10,
        },
    }


@app.command()
def demo(max_iters: Annotated[int, typer.Option(help="Training iterations.")] = 300) -> None:
    """Start the stack, train gpt-nano on the bundled text over REST, show the result, stop everything."""
    _exit_on_sigterm()
    settings = Settings()
    target = settings.data_root / "tiny.txt"
    if not target.exists():
        settings.data_root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEMO_CORPUS, target)
    stack = _start_stack(settings, port=0)
    try:
        client = GatewayClient(stack.gateway_url)
        job = client.submit(demo_spec(max_iters))
        console.print(f"submitted job [bold]{job['id']}[/] over REST: gpt-nano on {target}")
        final = _watch(client, job["id"])
        if final["status"] != "succeeded":
            raise typer.Exit(1)
        report = client.report(job["id"])
        _print_report(report, stack.gateway_url, settings.jobs_dir / job["id"] / "report.json")
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    finally:
        console.print("stopping the stack…")
        stack.stop()


def _print_report(report: dict[str, Any], gateway_url: str, path: Path) -> None:
    init = report["loss_at_init"]
    final = report["final"]
    console.print(
        f"loss at init {init['val']:.3f} (ln vocab = {init['expected_ln_vocab']:.3f}) → "
        f"final train loss [bold]{final['train_loss']:.3f}[/], val loss [bold]{final['val_loss']:.3f}[/]"
    )
    sample = report["samples"][0]
    console.print(f"sample: [dim]{sample['prompt']}[/]{sample['completion']}", markup=True, highlight=False)
    console.print(f"report: {path}\n        {gateway_url}/v1/jobs/{report['job_id']}/report")


def _progress_line(job: dict[str, Any]) -> str:
    m = job.get("metrics") or {}
    parts = [f"{job['status']:<9}", f"step {job['progress']['step']}/{job['progress']['max_iters']}"]
    if "train/loss" in m:
        parts.append(f"loss {m['train/loss']:.4f}")
    if "val/loss" in m:
        parts.append(f"val {m['val/loss']:.4f}")
    if "tokens_per_s" in m:
        parts.append(f"{m['tokens_per_s']:,.0f} tok/s")
    return "  ".join(parts)


def _watch(client: GatewayClient, job_id: str) -> dict[str, Any]:
    with console.status("waiting for a worker…") as status:
        final = client.wait(job_id, on_update=lambda job: status.update(_progress_line(job)))
    console.print(_progress_line(final))
    if final["error"]:
        console.print(f"[red]error:[/] {final['error']}")
    return final


@app.command()
def submit(
    spec_file: Annotated[Path | None, typer.Option("--spec", help="A job spec as a JSON file.")] = None,
    module: str = "text",
    source: str = "tiny.txt",
    model_type: str = "gpt-nano",
    max_iters: int = 300,
    watch: Annotated[bool, typer.Option(help="Follow the job to the end.")] = False,
    gateway: GatewayOpt = DEFAULT_GATEWAY,
    token: TokenOpt = None,
) -> None:
    """Submit a job, from a spec file or from flags; print its id."""
    if spec_file:
        spec = json.loads(spec_file.read_text())
    else:
        spec = {
            "dataset": {"module": module, "source": source},
            "model": {"model_type": model_type},
            "training": {"max_iters": max_iters},
        }
    client = GatewayClient(gateway, token)
    try:
        job = client.submit(spec)
    except GatewayError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from None
    print(job["id"])
    if watch:
        final = _watch(client, job["id"])
        raise typer.Exit(0 if final["status"] == "succeeded" else 1)


@app.command(name="watch")
def watch_cmd(job_id: str, gateway: GatewayOpt = DEFAULT_GATEWAY, token: TokenOpt = None) -> None:
    """Follow a job with a live progress line; exit 0 only if it succeeds."""
    try:
        final = _watch(GatewayClient(gateway, token), job_id)
    except GatewayError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from None
    raise typer.Exit(0 if final["status"] == "succeeded" else 1)
