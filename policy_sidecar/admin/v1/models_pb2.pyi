import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Model(_message.Message):
    __slots__ = ("id", "name", "provider", "upstream_model", "upstream_cluster", "context_window", "input_price_per_mtok", "output_price_per_mtok", "cached_input_price_per_mtok", "enabled", "version", "create_time", "update_time", "account", "unit_price_usd", "image_prices", "cache_write_5m_price_per_mtok", "cache_write_1h_price_per_mtok", "long_context_threshold_tokens", "long_context_input_price_per_mtok", "long_context_cached_input_price_per_mtok", "long_context_output_price_per_mtok", "price_version", "azure_deployment", "api_version")
    class ImagePricesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_USD_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PRICES_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_5M_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_THRESHOLD_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_CACHED_INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    AZURE_DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    provider: str
    upstream_model: str
    upstream_cluster: str
    context_window: int
    input_price_per_mtok: str
    output_price_per_mtok: str
    cached_input_price_per_mtok: str
    enabled: bool
    version: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    account: str
    unit_price_usd: str
    image_prices: _containers.ScalarMap[str, str]
    cache_write_5m_price_per_mtok: str
    cache_write_1h_price_per_mtok: str
    long_context_threshold_tokens: int
    long_context_input_price_per_mtok: str
    long_context_cached_input_price_per_mtok: str
    long_context_output_price_per_mtok: str
    price_version: int
    azure_deployment: str
    api_version: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., provider: _Optional[str] = ..., upstream_model: _Optional[str] = ..., upstream_cluster: _Optional[str] = ..., context_window: _Optional[int] = ..., input_price_per_mtok: _Optional[str] = ..., output_price_per_mtok: _Optional[str] = ..., cached_input_price_per_mtok: _Optional[str] = ..., enabled: _Optional[bool] = ..., version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., account: _Optional[str] = ..., unit_price_usd: _Optional[str] = ..., image_prices: _Optional[_Mapping[str, str]] = ..., cache_write_5m_price_per_mtok: _Optional[str] = ..., cache_write_1h_price_per_mtok: _Optional[str] = ..., long_context_threshold_tokens: _Optional[int] = ..., long_context_input_price_per_mtok: _Optional[str] = ..., long_context_cached_input_price_per_mtok: _Optional[str] = ..., long_context_output_price_per_mtok: _Optional[str] = ..., price_version: _Optional[int] = ..., azure_deployment: _Optional[str] = ..., api_version: _Optional[str] = ...) -> None: ...

class PriceVersion(_message.Message):
    __slots__ = ("version", "model_id", "model_name", "effective_time", "input_price_per_mtok", "output_price_per_mtok", "cached_input_price_per_mtok", "unit_price_usd", "image_prices", "cache_write_5m_price_per_mtok", "cache_write_1h_price_per_mtok", "long_context_threshold_tokens", "long_context_input_price_per_mtok", "long_context_cached_input_price_per_mtok", "long_context_output_price_per_mtok")
    class ImagePricesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_USD_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PRICES_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_5M_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_THRESHOLD_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_CACHED_INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    version: int
    model_id: str
    model_name: str
    effective_time: _timestamp_pb2.Timestamp
    input_price_per_mtok: str
    output_price_per_mtok: str
    cached_input_price_per_mtok: str
    unit_price_usd: str
    image_prices: _containers.ScalarMap[str, str]
    cache_write_5m_price_per_mtok: str
    cache_write_1h_price_per_mtok: str
    long_context_threshold_tokens: int
    long_context_input_price_per_mtok: str
    long_context_cached_input_price_per_mtok: str
    long_context_output_price_per_mtok: str
    def __init__(self, version: _Optional[int] = ..., model_id: _Optional[str] = ..., model_name: _Optional[str] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., input_price_per_mtok: _Optional[str] = ..., output_price_per_mtok: _Optional[str] = ..., cached_input_price_per_mtok: _Optional[str] = ..., unit_price_usd: _Optional[str] = ..., image_prices: _Optional[_Mapping[str, str]] = ..., cache_write_5m_price_per_mtok: _Optional[str] = ..., cache_write_1h_price_per_mtok: _Optional[str] = ..., long_context_threshold_tokens: _Optional[int] = ..., long_context_input_price_per_mtok: _Optional[str] = ..., long_context_cached_input_price_per_mtok: _Optional[str] = ..., long_context_output_price_per_mtok: _Optional[str] = ...) -> None: ...

class ListPriceVersionsRequest(_message.Message):
    __slots__ = ("model", "page_size", "page_token")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model: str
    page_size: int
    page_token: str
    def __init__(self, model: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPriceVersionsResponse(_message.Message):
    __slots__ = ("price_versions", "next_page_token")
    PRICE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    price_versions: _containers.RepeatedCompositeFieldContainer[PriceVersion]
    next_page_token: str
    def __init__(self, price_versions: _Optional[_Iterable[_Union[PriceVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class CreateModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("provider", "page_size", "page_token")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    provider: str
    page_size: int
    page_token: str
    def __init__(self, provider: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ("model", "update_mask")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    model: Model
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
