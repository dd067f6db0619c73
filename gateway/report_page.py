"""The fit report for people: ``GET /v1/jobs/{id}/report.html`` (a page) and ``.../report.png`` (the curves).

The JSON stays at ``GET /v1/jobs/{id}/report``. The page is rendered from the same stored report; the PNG is
the file the trainer saved beside ``report.json`` in the shared state directory.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse

from gateway.errors import error_doc
from gateway.jobs import Queue, existing_job, not_ready
from gateway.report_html import render
from simtrain.jobs import JobView

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_NOT_FOUND = {404: error_doc("No such job, or no report yet (`report_not_ready`)")}


@router.get(
    "/{job_id}/report.html",
    response_class=HTMLResponse,
    responses=_NOT_FOUND | {200: {"content": {"text/html": {}}, "description": "The report as a page"}},
    summary="The fit report as a page: verdict, loss curves, checks, data statistics, trace, samples",
)
def report_page(
    job: Annotated[JobView, Depends(existing_job)], queue: Queue, request: Request
) -> HTMLResponse:
    report = queue.report(job.id)
    if report is None:
        raise not_ready(job, "report", "report_not_ready")
    png = _png_data_url(request.app.state.settings.jobs_dir / job.id / "report.png")
    spec = job.spec.model_dump(exclude_none=True) if job.spec else None
    return HTMLResponse(render(report, png_url=png, spec=spec), headers={"Cache-Control": "no-cache"})


def _png_data_url(path: Path) -> str | None:
    """The plot inside the page: the web UI opens the page from a blob when a token guards the API, and from
    there a link back to ``/v1`` could not send the token. A saved page keeps its plot too. No plot file (or
    none the gateway can read): the page without the link, rather than no page."""
    try:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return None


@router.get(
    "/{job_id}/report.png",
    response_class=FileResponse,
    responses=_NOT_FOUND
    | {200: {"content": {"image/png": {}}, "description": "Train and val loss against step"}},
    summary="The loss curves the trainer drew beside the report (PNG)",
)
def report_png(job: Annotated[JobView, Depends(existing_job)], request: Request) -> FileResponse:
    path = request.app.state.settings.jobs_dir / job.id / "report.png"
    if not path.is_file():
        raise not_ready(job, "plot", "report_not_ready")
    return FileResponse(path, media_type="image/png")
