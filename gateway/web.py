"""The web page: one static HTML shell plus scripts and a stylesheet, no build step.

``/`` shows the jobs table and the submit form, ``/jobs/{id}`` one job, ``/experiments/{id}`` one
experiment, ``/datasets`` the prepared datasets and ``/datasets/{id}`` one, with its rows as training sees
them; the scripts draw them all from the REST API, so the shell itself holds no data and needs no token
(the script sends the token it is given).
``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) are likewise shells that fetch the OpenAPI document with
the token. Their scripts and styles come from the ``fastapi-offline`` package, served under
``/static/vendor/``, so the docs need no network beyond the gateway.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
# Swagger UI's and ReDoc's bundles, as the package installs them (a plain folder, never a zip).
VENDOR = Path(str(files("fastapi_offline") / "static"))

router = APIRouter(include_in_schema=False)


def _page(name: str = "index.html") -> FileResponse:
    # No caching of the shell: a new gateway version's script is picked up on the next load.
    return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


@router.get("/")
def home() -> FileResponse:
    return _page()


@router.get("/jobs/{job_id}")
def job_page(job_id: str) -> FileResponse:
    return _page()


@router.get("/experiments/{experiment_id}")
def experiment_page(experiment_id: str) -> FileResponse:
    return _page()


@router.get("/datasets")
def datasets_page() -> FileResponse:
    return _page()


@router.get("/datasets/{dataset_id}")
def dataset_page(dataset_id: str) -> FileResponse:
    return _page()


@router.get("/docs")
def api_docs() -> FileResponse:
    return _page("docs.html")


@router.get("/redoc")
def api_reference() -> FileResponse:
    return _page("redoc.html")


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)


def vendor_files() -> StaticFiles:
    return StaticFiles(directory=VENDOR)
