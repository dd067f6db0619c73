"""``simtrain up``, ``down`` and ``demo``: the local stack as child processes of this command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from simtrain.cli import output
from simtrain.cli.follow import print_end, progress_line
from simtrain.cli.gateway_address import load_settings, running_up, up_file, write_up_file
from simtrain.cli.job_ids import short
from simtrain.cli.output import EXIT_FAILED, CliError, handles_errors, say
from simtrain.cli.report import print_report
from simtrain.client import GatewayClient, GatewayError
from simtrain.process import pid_alive
from simtrain.settings import Settings
from simtrain.stack import LocalStack, StackError

DEMO_CORPUS = Path(__file__).resolve().parent.parent.parent / "data_service" / "demo" / "tiny.txt"
NEXT_STEPS = """[bold]next[/], with your own data:
  simtrain up                              # keep the stack running (web page at http://127.0.0.1:8000/)
  simtrain datasets upload FILE            # in another terminal: your text file; it prints its NAME
  simtrain submit --source NAME --watch    # train on it; prints the job id (JOB) first
  simtrain report JOB                      # its fit report
  simtrain ask JOB "some text"             # ask its model to continue a prompt"""


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the stack is stopped the same way as on Ctrl-C."""

    def handler(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _ignore_stop_signals() -> None:
    """From here on, stopping goes to the end: every child is stopped and waited for, none orphaned."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_stack(settings: Settings, port: int) -> LocalStack:
    say(f"[bold]starting the local stack[/] (logs in {settings.state_dir / 'logs'})")
    try:
        stack = LocalStack(settings, gateway_port=port).start()
    except StackError as e:
        raise CliError(f"could not start the stack: {e}", EXIT_FAILED, "stack_failed") from None
    say(f"  redis         {stack.redis_kind}")
    say(f"  data service  {stack.data_service_addr}")
    say(f"  gateway       {stack.gateway_url}  (API docs: {stack.gateway_url}/docs)")
    return stack


@handles_errors
def up(
    port: Annotated[int, typer.Option(help="Gateway port (0 picks a free one).")] = 8000,
) -> None:
    """Start Redis (if needed), the data service, a trainer, a generate server and the gateway; Ctrl-C stops.

    The other commands run from this folder find the gateway by itself, whatever its port.
    """
    _exit_on_sigterm()
    settings = load_settings()
    state = up_file(settings)
    if running := running_up(state):
        raise CliError(
            f"already running (pid {running['pid']}, {running['gateway']}); `simtrain down` stops it",
            EXIT_FAILED,
            "already_running",
        )
    stack = _start_stack(settings, port)
    try:
        write_up_file(state, stack.gateway_url)
        say(f"[green]ready[/]: web page {stack.gateway_url}/ ; Ctrl-C or `simtrain down` stops it")
        while all(child.process.poll() is None for child in stack.children):
            time.sleep(0.5)
        say("[red]a service exited; stopping the stack[/]")
    except KeyboardInterrupt:
        pass
    finally:
        _ignore_stop_signals()  # a second Ctrl-C or SIGTERM must not cut the stopping short
        say("stopping…")
        stack.stop()
        state.unlink(missing_ok=True)


@handles_errors
def down(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the stack to stop.")] = 60.0,
) -> None:
    """Stop the stack a `simtrain up` started from this folder."""
    state = up_file()
    running = running_up(state)
    if running is None:
        say("no local stack is running")
        return
    pid = int(running["pid"])
    say(f"stopping the stack (pid {pid})…")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # `up` removes its state file once every service has stopped; a process killed outright leaves
        # the file behind, so its absence (or a zombie waiting for its parent) counts as stopped too.
        if not state.exists() or not pid_alive(pid):
            say("[green]stopped[/]")
            return
        time.sleep(0.2)
    raise CliError(f"pid {pid} still running after {timeout:.0f}s", EXIT_FAILED, "still_running")


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


def _watch(client: GatewayClient, job_id: str) -> dict[str, Any]:
    with output.console.status("waiting for a worker…") as status:
        final = client.wait(job_id, on_update=lambda job: status.update(progress_line(job)))
    print_end(final)
    return final


def save_report(client: GatewayClient, report: dict[str, Any], folder: Path) -> Path:
    """Keep the report (page and JSON) where it stays readable after the stack stops; return the page."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "report.html"
    page.write_text(client.report_page(report["job_id"]))
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    return page


DEMO_PROMPT = "At noon, Ada"


def _ask(client: GatewayClient, job_id: str) -> None:
    """Show the trained model answering a prompt, as `simtrain ask` would."""
    try:
        answer = client.generate(job_id, DEMO_PROMPT, max_new_tokens=60, temperature=0.8, seed=0)
    except GatewayError as e:
        say(f"[yellow]could not ask the model: {escape(str(e))}[/]")
        return
    text = answer["completions"][0]["text"]
    say(f'asked: {escape(repr(DEMO_PROMPT))} → {escape(repr(text))}  (simtrain ask {short(job_id)} "…")')


@handles_errors
def demo(max_iters: Annotated[int, typer.Option(min=1, help="Training iterations.")] = 300) -> None:
    """Start the stack, train gpt-nano on the bundled text over REST, show and save the report, stop."""
    _exit_on_sigterm()
    settings = load_settings()
    target = settings.data_root / "tiny.txt"
    if not target.exists():
        settings.data_root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEMO_CORPUS, target)
    stack = _start_stack(settings, port=0)
    try:
        client = GatewayClient(stack.gateway_url)
        job = client.submit(demo_spec(max_iters))
        say(f"submitted job [bold]{short(job['id'])}[/] over REST: gpt-nano on {target}")
        final = _watch(client, job["id"])
        if final["status"] != "succeeded":
            raise typer.Exit(EXIT_FAILED)
        report = client.report(job["id"])
        print_report(report, stack.gateway_url, links=False)
        _ask(client, job["id"])
        page = save_report(client, report, settings.state_dir / "demo" / short(job["id"]))
        say(f"report saved: {page.resolve()}  (open it in a browser; report.json beside it)")
    except KeyboardInterrupt:
        say("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    finally:
        _ignore_stop_signals()
        say("stopping the stack…")
        stack.stop()
    say(NEXT_STEPS)
