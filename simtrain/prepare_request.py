"""A dataset as the data service's ``PrepareDatasetRequest``, built in one place for every caller.

Options travel as strings; one spelling of each value (``true``, not ``True``) means that a job, ``POST
/v1/datasets`` and a submit-time check all send the same request, and so name the same dataset id.
"""

from __future__ import annotations

from collections.abc import Mapping

from simtrain.data.v1 import data_service_pb2 as pb


def prepare_request(
    module: str, source: str, tokenizer: str, packing: str, options: Mapping[str, str | int | float | bool]
) -> pb.PrepareDatasetRequest:
    return pb.PrepareDatasetRequest(
        module=module,
        source=source,
        tokenizer=tokenizer,
        packing=packing,
        options={k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()},
    )
