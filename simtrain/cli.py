"""The ``simtrain`` command: run the local stack, submit and follow jobs, manage datasets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from simtrain.client import GatewayClient, GatewayError
from simtrain.process import pid_alive
from simtrain.settings import Settings
from simtrain.stack import LocalStack, StackError

app = typer.Typer(help="simtrain: is this dataset fit for GPT-style training?", no_args_is_help=True)
datasets_app = typer.Typer(
    help="Data modules and datasets: list, upload, prepare, show.", no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets")
console = Console(soft_wrap=True)

DEMO_CORPUS = Path(__file__).resolve().parent.parent / "data_service" / "demo" / "tiny.txt"
GatewayOpt = Annotated[
    str, typer.Option("--gateway", envvar="SIMTRAIN_GATEWAY_URL", help="Gateway base URL.")
]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="SIMTRAIN_API_TOKEN", help="API token.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")]
DEFAULT_GATEWAY = "http://127.0.0.1:8000"
# `watch` and `submit --watch` exit with the job's outcome.
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3}
EXIT_NOT_FIT = 4  # `report`: the verdict is "not fit"
UP_FILE = "simtrain-up.json"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


@contextmanager
def _gateway_errors() -> Iterator[None]:
    """Turn an error answer from the gateway into its message and exit status 1, not a traceback."""
    try:
        yield
    except GatewayError as e:
        console.print(f"[red]{e}[/]", highlight=False)
        raise typer.Exit(1) from None


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


def _up_file(settings: Settings) -> Path:
    return settings.state_dir / UP_FILE


def _running_up(path: Path) -> dict[str, Any] | None:
    """What the PID file says about a running ``simtrain up``, or None (removing a stale file)."""
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"simtrain" not in cmdline.read_bytes():
            raise ProcessLookupError  # the pid was reused by something else
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, ProcessLookupError):
        path.unlink(missing_ok=True)
        return None
    except PermissionError:
        pass  # alive, but not ours to signal; report it anyway
    return info


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Gateway port (0 picks a free one).")] = 8000,
) -> None:
    """Start Redis (if needed), the data service, a trainer and the gateway; Ctrl-C or `down` stops all."""
    _exit_on_sigterm()
    settings = Settings()
    pid_file = _up_file(settings)
    running = _running_up(pid_file)
    if running:
        console.print(
            f"[red]already running[/] (pid {running['pid']}, {running['gateway']}); `simtrain down` stops it"
        )
        raise typer.Exit(1)
    stack = _start_stack(settings, port)
    try:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(json.dumps({"pid": os.getpid(), "gateway": stack.gateway_url}))
        console.print(f"[green]ready[/]: web page {stack.gateway_url}/ ; Ctrl-C or `simtrain down` stops it")
        while all(child.process.poll() is None for child in stack.children):
            time.sleep(0.5)
        console.print("[red]a service exited; stopping the stack[/]")
    except KeyboardInterrupt:
        pass
    finally:
        _ignore_stop_signals()  # a second Ctrl-C or SIGTERM must not cut the stopping short
        console.print("stopping…")
        stack.stop()
        pid_file.unlink(missing_ok=True)


@app.command()
def down(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the stack to stop.")] = 60.0,
) -> None:
    """Stop the stack a `simtrain up` started (found by its PID file under the state dir)."""
    pid_file = _up_file(Settings())
    running = _running_up(pid_file)
    if running is None:
        console.print("no local stack is running")
        return
    pid = int(running["pid"])
    console.print(f"stopping the stack (pid {pid})…")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # `up` removes its PID file once every service has stopped; a process killed outright leaves
        # the file behind, so its absence (or a zombie waiting for its parent) counts as stopped too.
        if not pid_file.exists() or not pid_alive(pid):
            console.print("[green]stopped[/]")
            return
        time.sleep(0.2)
    console.print(f"[red]pid {pid} still running after {timeout:.0f}s[/]")
    raise typer.Exit(1)


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
        _ignore_stop_signals()
        console.print("stopping the stack…")
        stack.stop()


def _loss(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _print_report(report: dict[str, Any], gateway_url: str, path: Path) -> None:
    if "final" in report:  # a job refused before training has no losses
        init, final = report["loss_at_init"], report["final"]
        train, val = _loss(final["train_loss"]), _loss(final["val_loss"])
        console.print(
            f"loss at init {_loss(init['val'])} (ln vocab = {init['expected_ln_vocab']:.3f}) → "
            f"final train loss [bold]{train}[/], val loss [bold]{val}[/]"
        )
    if b := report.get("baselines"):
        console.print(
            f"learned: val loss {b['below_unigram_nats']:.3f} nats ({b['below_unigram_share']:.1%}) below "
            f"the unigram baseline {b['unigram_nats']:.3f}, {b['below_uniform_nats']:.3f} nats "
            f"({b['below_uniform_share']:.1%}) below ln vocab"
        )
    if report.get("samples"):
        sample = report["samples"][0]
        console.print(
            f"sample: [dim]{escape(sample['prompt'])}[/]{escape(sample['completion'])}", highlight=False
        )
    if report.get("verdict"):
        colour = {"fit": "green", "fit with warnings": "yellow", "not fit": "red"}.get(
            report["verdict"], "default"
        )
        console.print(f"verdict: [bold {colour}]{report['verdict']}[/] ({escape(report.get('summary', ''))})")
    console.print(f"report: {path}\n        {gateway_url}/v1/jobs/{report['job_id']}/report")
    if report.get("verdict"):
        console.print(f"        {gateway_url}/v1/jobs/{report['job_id']}/report.html")


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


def _load_spec(path: Path) -> dict[str, Any]:
    """A job spec from a JSON file (``.json``) or a YAML one (anything else)."""
    try:
        text = path.read_text()
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        console.print(f"[red]cannot read the spec {path}:[/] {e}", highlight=False)
        raise typer.Exit(1) from None
    if not isinstance(spec, dict):
        console.print(f"[red]the spec {path} is not a mapping[/]")
        raise typer.Exit(1)
    return spec


def _apply_flags(spec: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """Set each flag that was given at its dotted place in the spec (flags win over the file)."""
    for dotted, value in flags.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return spec


def _follow(client: GatewayClient, job_id: str, json_out: bool = False) -> dict[str, Any]:
    """Follow a job's live events with a progress bar (step, loss, tokens/s, ETA); return its final record."""
    job = client.job(job_id)
    columns = (
        TextColumn("[bold]{task.fields[status]:<9}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=json_out) as progress:
        task = progress.add_task(
            job_id,
            total=job["progress"]["max_iters"],
            completed=job["progress"]["step"],
            status=job["status"],
            loss="—",
            tps="—",
        )

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "metrics":
                fields: dict[str, Any] = {"completed": data["step"]}
                if "train/loss" in data:
                    fields["loss"] = f"{data['train/loss']:.4f}"
                if "tokens_per_s" in data:
                    fields["tps"] = f"{data['tokens_per_s']:,.0f}"
                progress.update(task, **fields)
            elif event in ("status", "end") and "progress" in data:
                progress.update(task, status=data["status"], completed=data["progress"]["step"])

        final = client.follow(job_id, on_event)
    if json_out:
        _print_json(final)
    else:
        console.print(_progress_line(final), highlight=False)
        if final["error"]:
            console.print(f"[red]error:[/] {final['error']}", highlight=False)
    return final


@app.command()
def submit(
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="A job spec file, YAML or JSON (.json); flags override it.")
    ] = None,
    module: Annotated[str | None, typer.Option(help="Data module (default text).")] = None,
    source: Annotated[str | None, typer.Option(help="Source under the data root (default tiny.txt).")] = None,
    dataset_id: Annotated[
        str | None, typer.Option("--dataset-id", help="A prepared dataset instead.")
    ] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer (default char).")] = None,
    model_type: Annotated[str | None, typer.Option(help="minGPT model preset (default gpt-nano).")] = None,
    max_iters: Annotated[int | None, typer.Option(help="Training iterations (default 300).")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    block_size: Annotated[int | None, typer.Option()] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    eval_interval: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    data_service: Annotated[str | None, typer.Option(help="HOST:PORT of the data service to use.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Resubmitting with the same key returns the same job.")
    ] = None,
    watch: Annotated[bool, typer.Option(help="Follow the job to the end; exit with its outcome.")] = False,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = DEFAULT_GATEWAY,
    token: TokenOpt = None,
) -> None:
    """Submit a job from a spec file and/or flags; print its id."""
    if spec_file:
        spec = _load_spec(spec_file)
    else:
        spec = {
            "dataset": {"module": "text", "source": "tiny.txt"},
            "model": {"model_type": "gpt-nano"},
            "training": {"max_iters": 300},
        }
    if dataset_id:
        spec["dataset"] = {"id": dataset_id}
    elif module or source:
        spec["dataset"] = {k: v for k, v in spec.get("dataset", {}).items() if k != "id"}
        spec["dataset"].setdefault("module", "text")
    _apply_flags(
        spec,
        {
            "dataset.module": module,
            "dataset.source": source,
            "dataset.tokenizer": tokenizer,
            "training.max_iters": max_iters,
            "training.batch_size": batch_size,
            "training.block_size": block_size,
            "training.learning_rate": learning_rate,
            "training.eval_interval": eval_interval,
            "training.seed": seed,
            "training.device": device,
            "data_service": data_service,
        },
    )
    if model_type:  # a preset replaces explicit sizes
        spec["model"] = {k: v for k, v in spec.get("model", {}).items() if k.endswith("pdrop")}
        spec["model"]["model_type"] = model_type
    client = GatewayClient(gateway, token)
    with _gateway_errors():
        job = client.submit(spec, idempotency_key)
        if json_out and not watch:
            _print_json(job)
        elif not json_out:
            print(job["id"])
        if watch:
            final = _follow(client, job["id"], json_out)
            raise typer.Exit(EXIT_CODES[final["status"]])


@app.command(name="watch")
def watch_cmd(
    job_id: str, json_out: JsonOpt = False, gateway: GatewayOpt = DEFAULT_GATEWAY, token: TokenOpt = None
) -> None:
    """Follow a job live (step, loss, tokens/s, ETA); exit 0 on success, 1 on failure, 3 if cancelled."""
    with _gateway_errors():
        final = _follow(GatewayClient(gateway, token), job_id, json_out)
    raise typer.Exit(EXIT_CODES[final["status"]])


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M") if ts else ""


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page.")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="Start after this cursor (from a previous page).")
    ] = None,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = DEFAULT_GATEWAY,
    token: TokenOpt = None,
) -> None:
    """List jobs, newest first."""
    with _gateway_errors():
        page = GatewayClient(gateway, token).jobs(status, limit, cursor)
    if json_out:
        _print_json(page)
        return
    # Ids are for copying: never cut them short; the other columns give way on a narrow terminal.
    id_column = Column("id", no_wrap=True, min_width=32)
    status_column = Column("status", no_wrap=True, min_width=9)
    table = Table(id_column, status_column, "step", "loss", "val", "model", "data", "created", box=None)
    for job in page["jobs"]:
        m, ds, model = job["metrics"], job["spec"]["dataset"], job["spec"]["model"]
        table.add_row(
            job["id"],
            job["status"],
            f"{job['progress']['step']}/{job['progress']['max_iters']}",
            f"{m['train/loss']:.4f}" if "train/loss" in m else "",
            f"{m['val/loss']:.4f}" if "val/loss" in m else "",
            model.get("model_type") or f"{model['n_layer']}x{model['n_embd']}",
            ds.get("id") or f"{ds['module']}:{ds['source']}",
            _when(job["created_at"]),
        )
    console.print(table if page["jobs"] else "no jobs")
    if page["next_cursor"]:
        console.print(f"more: simtrain jobs --cursor {page['next_cursor']}", highlight=False)


@app.command()
def cancel(
    job_id: str, json_out: JsonOpt = False, gateway: GatewayOpt = DEFAULT_GATEWAY, token: TokenOpt = None
):
    """Cancel a job: a queued one at once, a running one at its next step (it keeps a checkpoint)."""
    with _gateway_errors():
        result = GatewayClient(gateway, token).cancel(job_id)
    if json_out:
        _print_json(result)
    elif result["cancel_requested"]:
        console.print(f"cancel requested: job {job_id} stops at its next step")
    else:
        console.print(f"job {job_id} {result['status']}")


@app.command()
def delete(job_id: str, gateway: GatewayOpt = DEFAULT_GATEWAY, token: TokenOpt = None) -> None:
    """Delete a finished job with its metrics, report and checkpoint."""
    with _gateway_errors():
        GatewayClient(gateway, token).delete(job_id)
    console.print(f"deleted job {job_id}")


@app.command()
def report(
    job_id: str, json_out: JsonOpt = False, gateway: GatewayOpt = DEFAULT_GATEWAY, token: TokenOpt = None
):
    """Show a job's fit report: the checks as a table (failing first) and the verdict.

    Exits 0 when the data is fit (with or without warnings), 4 when it is not fit, 1 when there is no report.
    """
    with _gateway_errors():
        body = GatewayClient(gateway, token).report(job_id)
    if json_out:
        _print_json(body)
    else:
        where = (
            Path(body["checkpoint"]).parent / "report.json" if "checkpoint" in body else Path("report.json")
        )
        _print_checks(body.get("checks") or [])
        _print_report(body, gateway.rstrip("/"), where)
    if body.get("verdict") == "not fit":
        raise typer.Exit(EXIT_NOT_FIT)


def _print_checks(checks: list[dict[str, Any]] | dict[str, Any]) -> None:
    if isinstance(checks, dict):
        checks = [{"name": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in checks.items()]
    if not checks:
        return
    table = Table("check", "verdict", "value", "threshold", "why", box=None)
    colour = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    for c in checks:
        verdict = str(c.get("verdict", ""))
        style = colour.get(verdict, "")
        value = c.get("value")
        shown = f"{value:.3g}" if isinstance(value, float) else ("" if value is None else str(value))
        table.add_row(
            str(c.get("name", "")),
            f"[{style}]{verdict}[/]" if style else verdict,
            shown,
            escape(str(c.get("threshold") or "")),
            escape(str(c.get("reason", ""))),
        )
    console.print(table)


@app.command()
def checkpoint(
    job_id: str,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to save it.")] = None,
    gateway: GatewayOpt = DEFAULT_GATEWAY,
    token: TokenOpt = None,
) -> None:
    """Download a job's latest checkpoint (a PyTorch file)."""
    path = output or Path(f"{job_id}-checkpoint.pt")
    with _gateway_errors():
        size = GatewayClient(gateway, token).download_checkpoint(job_id, path)
    console.print(f"saved {path} ({size:,} bytes)")


# -- datasets ------------------------------------------------------------------------------------


def _dataset_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        Column("id", no_wrap=True),
        "module",
        "source",
        "tokenizer",
        "vocab",
        "train tokens",
        "val tokens",
        "warnings",
        box=None,
    )
    for d in rows:
        splits = d["splits"]
        table.add_row(
            d["id"],
            d["module"],
            d["source"],
            d["tokenizer"],
            str(d["vocab_size"]),
            f"{splits.get('train', {}).get('tokens', 0):,}",
            f"{splits.get('val', {}).get('tokens', 0):,}",
            str(len(d["warnings"])),
        )
    return table


@datasets_app.command("list")
def datasets_list(json_out: JsonOpt = False, gateway: GatewayOpt = DEFAULT_GATEWAY, token: TokenOpt = None):
    """The datasets prepared on the data service."""
    with _gateway_errors():
        rows = GatewayClient(gateway, token).datasets()
    if json_out:
        _print_json(rows)
    else:
        console.print(_dataset_table(rows) if rows else "no datasets prepared yet")


@datasets_app.command("modules")
def datasets_modules(
    json_out: JsonOpt = False, gateway: GatewayOpt = DEFAULT_GATEWAY, token: TokenOpt = None
):
    """The data modules on offer, with their options."""
    with _gateway_errors():
        rows = GatewayClient(gateway, token).modules()
    if json_out:
        _print_json(rows)
        return
    for m in rows:
        console.print(f"[bold]{m['name']}[/]  {m['description']}", highlight=False)
        for o in m["options"]:
            console.print(f"    {o['name']}={o['default']}  [dim]{o['description']}[/]", highlight=False)


@datasets_app.command("show")
def datasets_show(
    dataset_id: str, json_out: JsonOpt = False, gateway: GatewayOpt = DEFAULT_GATEWAY, token: TokenOpt = None
):
    """Describe one prepared dataset."""
    with _gateway_errors():
        info = GatewayClient(gateway, token).dataset(dataset_id)
    if json_out:
        _print_json(info)
        return
    console.print(_dataset_table([info]))
    for warning in info["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@datasets_app.command("upload")
def datasets_upload(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The file to upload.")
    ],
    name: Annotated[
        str | None, typer.Option(help="Name to store it under (default: the file's name).")
    ] = None,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = DEFAULT_GATEWAY,
    token: TokenOpt = None,
) -> None:
    """Upload a source file to the data service (streamed, never read whole); print its source name."""
    with _gateway_errors(), file.open("rb") as f:
        result = GatewayClient(gateway, token).upload(f, name or file.name)
    if json_out:
        _print_json(result)
    else:
        console.print(f"uploaded {result['size_bytes']:,} bytes as source [bold]{result['source']}[/]")


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        out[key] = value
    return out


@datasets_app.command("prepare")
def datasets_prepare(
    source: Annotated[str, typer.Option(help="Source under the data root (or an uploaded one).")],
    module: Annotated[str, typer.Option(help="Data module.")] = "text",
    tokenizer: Annotated[str, typer.Option()] = "char",
    packing: Annotated[str, typer.Option()] = "stream",
    option: Annotated[list[str] | None, typer.Option(help="A module option, KEY=VALUE; repeatable.")] = None,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = DEFAULT_GATEWAY,
    token: TokenOpt = None,
) -> None:
    """Prepare a dataset (idempotent: the same input gives the same id); print its id."""
    request = {
        "module": module,
        "source": source,
        "tokenizer": tokenizer,
        "packing": packing,
        "options": _options(option or []),
    }
    with _gateway_errors():
        info = GatewayClient(gateway, token).prepare(request)
    if json_out:
        _print_json(info)
        return
    console.print(_dataset_table([info]))
    for warning in info["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command()
def conformance(
    address: Annotated[str, typer.Argument(help="The data service, HOST:PORT.")],
    module: Annotated[str, typer.Option(help="Module to prepare the test source with.")] = "text",
    source: Annotated[
        str | None, typer.Option(help="A source already on the server (default: upload a generated one).")
    ] = None,
) -> None:
    """Check a data service against the protocol contract; print pass/fail per check, exit 1 on any fail."""
    from simtrain.conformance import run_checks

    results = run_checks(address, module=module, source=source)
    colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}
    for r in results:
        console.print(f"[{colour[r.label]}]{r.label}[/]  {r.name}: {r.detail}", highlight=False)
    failed = sum(r.passed is False for r in results)
    passed = sum(r.passed is True for r in results)
    skipped = sum(r.passed is None for r in results)
    console.print(f"conformance of {address}: {passed} checks passed, {failed} failed, {skipped} skipped")
    raise typer.Exit(1 if failed else 0)
