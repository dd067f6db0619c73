"""Preparation options every module takes, on top of its own, and their one canonical spelling.

Equal requests must hash to equal dataset ids, so values are normalised ("0.10" is "0.1") and options
that do not apply (``vocab_size`` for a char tokenizer) are refused rather than silently hashed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from data_service.errors import DataError
from data_service.memory import OPTION as MEMORY_OPTION
from data_service.memory import canonical_memory
from data_service.modules.base import DataModule, Option
from data_service.retrieval.options import OPTIONS as RETRIEVAL_OPTIONS
from data_service.retrieval.options import canonical_retrieval
from data_service.tokenizers import tokenizer_class

PACKINGS = ("stream", "pairs")
OVERLONG = ("truncate", "reject")
TOKEN_DTYPES = ("auto", "uint16", "uint32")

OPTIONS = (
    Option(
        "val_fraction",
        "Share of the text held out for validation, chosen by example hash so duplicates stay on one side.",
        "0.1",
    ),
    Option("separator", "Text put between documents in stream packing.", "\n"),
    Option("overlong", "Pairs longer than the block: 'truncate' (and count them) or 'reject'.", "truncate"),
    Option("token_dtype", "Stored token width: 'auto', 'uint16' or 'uint32'.", "auto"),
    Option("vocab_size", "Vocabulary size of the bpe tokenizer (bpe only).", "4096"),
    *RETRIEVAL_OPTIONS,
    MEMORY_OPTION,
)
TOKENIZER_ONLY = {"vocab_size": "bpe"}


def all_options(module: DataModule) -> tuple[Option, ...]:
    return (*OPTIONS, *module.options)


def canonical_options(module: DataModule, tokenizer: str, given: Mapping[str, str]) -> dict[str, str]:
    """Every option that applies, with defaults filled in and values normalised; typos are errors."""
    tokenizer_class(tokenizer)  # an unknown tokenizer is named before any option is
    known = {o.name: o for o in all_options(module)}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise DataError(
            f"unknown option(s) {', '.join(unknown)} for module {module.name!r}; it takes: {', '.join(known)}"
        )
    for name, kind in TOKENIZER_ONLY.items():
        if name in given and tokenizer != kind:
            raise DataError(f"option {name} applies to the {kind} tokenizer only, not {tokenizer!r}")
    opts = {
        name: str(given.get(name, o.default))
        for name, o in known.items()
        if TOKENIZER_ONLY.get(name, tokenizer) == tokenizer
    }
    try:
        fraction = float(opts["val_fraction"])
    except ValueError:
        fraction = math.nan
    if not 0 <= fraction < 1:
        raise DataError(f"option val_fraction must be a number in [0, 1), got {opts['val_fraction']!r}")
    opts["val_fraction"] = repr(fraction)
    for name, allowed in (("overlong", OVERLONG), ("token_dtype", TOKEN_DTYPES)):
        if opts[name] not in allowed:
            raise DataError(f"option {name} must be one of {', '.join(allowed)}, got {opts[name]!r}")
    if "vocab_size" in opts:
        try:
            opts["vocab_size"] = str(int(opts["vocab_size"]))
        except ValueError:
            raise DataError(f"option vocab_size must be an integer, got {opts['vocab_size']!r}") from None
    canonical_retrieval(opts, given)
    canonical_memory(opts)
    return opts


def token_dtype(choice: str, vocab_size: int) -> str:
    """The narrowest stored dtype that holds every id; a vocab too big for the chosen one is an error."""
    limits = {"uint16": 2**16, "uint32": 2**32}
    if choice == "auto":
        choice = "uint16" if vocab_size <= limits["uint16"] else "uint32"
    if vocab_size > limits[choice]:
        raise DataError(
            f"the vocabulary has {vocab_size} tokens, too many for token_dtype {choice} "
            f"(at most {limits[choice]}): use token_dtype uint32 or a smaller vocab_size"
        )
    return choice
