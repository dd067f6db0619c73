import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_ROLE_UNSPECIFIED: _ClassVar[TokenRole]
    TOKEN_ROLE_TRAINED: _ClassVar[TokenRole]
    TOKEN_ROLE_MASKED: _ClassVar[TokenRole]
    TOKEN_ROLE_PADDING: _ClassVar[TokenRole]
TOKEN_ROLE_UNSPECIFIED: TokenRole
TOKEN_ROLE_TRAINED: TokenRole
TOKEN_ROLE_MASKED: TokenRole
TOKEN_ROLE_PADDING: TokenRole

class ModuleOption(_message.Message):
    __slots__ = ("name", "description", "default_value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    default_value: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., default_value: _Optional[str] = ...) -> None: ...

class ModuleInfo(_message.Message):
    __slots__ = ("name", "description", "options", "source_is_label")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IS_LABEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    options: _containers.RepeatedCompositeFieldContainer[ModuleOption]
    source_is_label: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., options: _Optional[_Iterable[_Union[ModuleOption, _Mapping]]] = ..., source_is_label: _Optional[bool] = ...) -> None: ...

class ListModulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModulesResponse(_message.Message):
    __slots__ = ("modules",)
    MODULES_FIELD_NUMBER: _ClassVar[int]
    modules: _containers.RepeatedCompositeFieldContainer[ModuleInfo]
    def __init__(self, modules: _Optional[_Iterable[_Union[ModuleInfo, _Mapping]]] = ...) -> None: ...

class PrepareDatasetRequest(_message.Message):
    __slots__ = ("module", "source", "tokenizer", "packing", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODULE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    PACKING_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    module: str
    source: str
    tokenizer: str
    packing: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, module: _Optional[str] = ..., source: _Optional[str] = ..., tokenizer: _Optional[str] = ..., packing: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("filename", "data")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    filename: str
    data: bytes
    def __init__(self, filename: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadResult(_message.Message):
    __slots__ = ("source", "size_bytes", "sha256")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    source: str
    size_bytes: int
    sha256: str
    def __init__(self, source: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ListSourcesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SourceFile(_message.Message):
    __slots__ = ("name", "size_bytes", "uploaded_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    uploaded_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., uploaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSourcesResponse(_message.Message):
    __slots__ = ("sources",)
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[SourceFile]
    def __init__(self, sources: _Optional[_Iterable[_Union[SourceFile, _Mapping]]] = ...) -> None: ...

class SplitInfo(_message.Message):
    __slots__ = ("name", "num_tokens", "num_examples")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_tokens: int
    num_examples: int
    def __init__(self, name: _Optional[str] = ..., num_tokens: _Optional[int] = ..., num_examples: _Optional[int] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("dataset_id", "module", "source", "tokenizer", "packing", "vocab_size", "splits", "stats_json", "warnings")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    PACKING_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    SPLITS_FIELD_NUMBER: _ClassVar[int]
    STATS_JSON_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    module: str
    source: str
    tokenizer: str
    packing: str
    vocab_size: int
    splits: _containers.RepeatedCompositeFieldContainer[SplitInfo]
    stats_json: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset_id: _Optional[str] = ..., module: _Optional[str] = ..., source: _Optional[str] = ..., tokenizer: _Optional[str] = ..., packing: _Optional[str] = ..., vocab_size: _Optional[int] = ..., splits: _Optional[_Iterable[_Union[SplitInfo, _Mapping]]] = ..., stats_json: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamBatchesRequest(_message.Message):
    __slots__ = ("dataset_id", "split", "batch_size", "block_size", "seed", "start_step", "num_steps", "rank", "world_size", "batches_per_message", "shm_probe")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    NUM_STEPS_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SHM_PROBE_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    split: str
    batch_size: int
    block_size: int
    seed: int
    start_step: int
    num_steps: int
    rank: int
    world_size: int
    batches_per_message: int
    shm_probe: str
    def __init__(self, dataset_id: _Optional[str] = ..., split: _Optional[str] = ..., batch_size: _Optional[int] = ..., block_size: _Optional[int] = ..., seed: _Optional[int] = ..., start_step: _Optional[int] = ..., num_steps: _Optional[int] = ..., rank: _Optional[int] = ..., world_size: _Optional[int] = ..., batches_per_message: _Optional[int] = ..., shm_probe: _Optional[str] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("step", "x", "y", "vocab_size", "num_batches", "shm_file")
    STEP_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_BATCHES_FIELD_NUMBER: _ClassVar[int]
    SHM_FILE_FIELD_NUMBER: _ClassVar[int]
    step: int
    x: Tensor
    y: Tensor
    vocab_size: int
    num_batches: int
    shm_file: str
    def __init__(self, step: _Optional[int] = ..., x: _Optional[_Union[Tensor, _Mapping]] = ..., y: _Optional[_Union[Tensor, _Mapping]] = ..., vocab_size: _Optional[int] = ..., num_batches: _Optional[int] = ..., shm_file: _Optional[str] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("dataset_id", "text")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    text: str
    def __init__(self, dataset_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class DecodeRequest(_message.Message):
    __slots__ = ("dataset_id", "tokens")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dataset_id: _Optional[str] = ..., tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class DecodeResponse(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class GetTokenizerRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class TokenizerDefinition(_message.Message):
    __slots__ = ("kind", "state_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    state_json: str
    def __init__(self, kind: _Optional[str] = ..., state_json: _Optional[str] = ...) -> None: ...

class DatasetProblem(_message.Message):
    __slots__ = ("field", "message")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    field: str
    message: str
    def __init__(self, field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CheckDatasetResponse(_message.Message):
    __slots__ = ("problems",)
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    problems: _containers.RepeatedCompositeFieldContainer[DatasetProblem]
    def __init__(self, problems: _Optional[_Iterable[_Union[DatasetProblem, _Mapping]]] = ...) -> None: ...

class GetRowsRequest(_message.Message):
    __slots__ = ("dataset_id", "split", "start", "count", "block_size")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    split: str
    start: int
    count: int
    block_size: int
    def __init__(self, dataset_id: _Optional[str] = ..., split: _Optional[str] = ..., start: _Optional[int] = ..., count: _Optional[int] = ..., block_size: _Optional[int] = ...) -> None: ...

class RowToken(_message.Message):
    __slots__ = ("id", "text", "role", "special")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SPECIAL_FIELD_NUMBER: _ClassVar[int]
    id: int
    text: str
    role: TokenRole
    special: bool
    def __init__(self, id: _Optional[int] = ..., text: _Optional[str] = ..., role: _Optional[_Union[TokenRole, str]] = ..., special: _Optional[bool] = ...) -> None: ...

class Row(_message.Message):
    __slots__ = ("index", "token_offset", "tokens", "truncated")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOKEN_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    index: int
    token_offset: int
    tokens: _containers.RepeatedCompositeFieldContainer[RowToken]
    truncated: bool
    def __init__(self, index: _Optional[int] = ..., token_offset: _Optional[int] = ..., tokens: _Optional[_Iterable[_Union[RowToken, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class GetRowsResponse(_message.Message):
    __slots__ = ("rows", "total_rows", "packing")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    PACKING_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[Row]
    total_rows: int
    packing: str
    def __init__(self, rows: _Optional[_Iterable[_Union[Row, _Mapping]]] = ..., total_rows: _Optional[int] = ..., packing: _Optional[str] = ...) -> None: ...

class RetrieveRequest(_message.Message):
    __slots__ = ("dataset_id", "prompts")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    prompts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset_id: _Optional[str] = ..., prompts: _Optional[_Iterable[str]] = ...) -> None: ...

class RetrievedContext(_message.Message):
    __slots__ = ("tokens", "text", "passages")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[int]
    text: str
    passages: int
    def __init__(self, tokens: _Optional[_Iterable[int]] = ..., text: _Optional[str] = ..., passages: _Optional[int] = ...) -> None: ...

class RetrieveResponse(_message.Message):
    __slots__ = ("contexts",)
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    contexts: _containers.RepeatedCompositeFieldContainer[RetrievedContext]
    def __init__(self, contexts: _Optional[_Iterable[_Union[RetrievedContext, _Mapping]]] = ...) -> None: ...
