"""Short job ids: the CLI shows the first 8 hex digits of an id and takes any unique start of one."""

from __future__ import annotations

import re
from collections.abc import Iterator

from simtrain.cli.output import CliError
from simtrain.client import GatewayClient, GatewayError

SHORT = 8
FULL = 32  # uuid4 hex, what the gateway hands out
_HEX = re.compile(r"[0-9a-f]{1,64}")
PAGE = 200  # the most the jobs list gives per page


def short(job_id: str) -> str:
    return job_id[:SHORT]


def _all_ids(client: GatewayClient) -> Iterator[str]:
    cursor = None
    while True:
        page = client.jobs(limit=PAGE, cursor=cursor)
        yield from (job["id"] for job in page["jobs"])
        if not (cursor := page["next_cursor"]):
            return


def resolve(client: GatewayClient, given: str) -> str:
    """The full id of the one job whose id starts with ``given``; a CliError (exit 2) naming the mistake."""
    wanted = given.strip().lower()
    if not _HEX.fullmatch(wanted):
        raise CliError(f"{given!r} is not a job id: job ids are hex digits (the first {SHORT} are enough)")
    if len(wanted) >= FULL:
        try:
            client.job(wanted)
        except GatewayError as e:
            if e.status == 404:
                raise CliError(f"no job with id {wanted}", code="not_found") from None
            raise
        return wanted
    matches = [job_id for job_id in _all_ids(client) if job_id.startswith(wanted)]
    if not matches:
        raise CliError(f"no job id starts with {wanted}", code="not_found")
    if wanted in matches:
        return wanted
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
        raise CliError(
            f"{wanted} is the start of {len(matches)} job ids ({shown}); give more digits",
            code="ambiguous_id",
        )
    return matches[0]
