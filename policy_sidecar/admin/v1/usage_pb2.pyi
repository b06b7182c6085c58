import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Bucket(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUCKET_UNSPECIFIED: _ClassVar[Bucket]
    BUCKET_HOUR: _ClassVar[Bucket]
    BUCKET_DAY: _ClassVar[Bucket]

class TopDimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOP_DIMENSION_UNSPECIFIED: _ClassVar[TopDimension]
    TOP_DIMENSION_APP: _ClassVar[TopDimension]
    TOP_DIMENSION_MODEL: _ClassVar[TopDimension]

class TopMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOP_METRIC_UNSPECIFIED: _ClassVar[TopMetric]
    TOP_METRIC_TOKENS: _ClassVar[TopMetric]
    TOP_METRIC_COST: _ClassVar[TopMetric]
    TOP_METRIC_REQUESTS: _ClassVar[TopMetric]
BUCKET_UNSPECIFIED: Bucket
BUCKET_HOUR: Bucket
BUCKET_DAY: Bucket
TOP_DIMENSION_UNSPECIFIED: TopDimension
TOP_DIMENSION_APP: TopDimension
TOP_DIMENSION_MODEL: TopDimension
TOP_METRIC_UNSPECIFIED: TopMetric
TOP_METRIC_TOKENS: TopMetric
TOP_METRIC_COST: TopMetric
TOP_METRIC_REQUESTS: TopMetric

class UsageFilter(_message.Message):
    __slots__ = ("org_id", "app_id", "environment", "model")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    app_id: str
    environment: str
    model: str
    def __init__(self, org_id: _Optional[str] = ..., app_id: _Optional[str] = ..., environment: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class UsageTotals(_message.Message):
    __slots__ = ("requests", "denied_requests", "error_requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "cost_usd", "request_bytes", "response_bytes", "avg_latency_ms")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DENIED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BYTES_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    requests: int
    denied_requests: int
    error_requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: str
    request_bytes: int
    response_bytes: int
    avg_latency_ms: float
    def __init__(self, requests: _Optional[int] = ..., denied_requests: _Optional[int] = ..., error_requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cached_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., cost_usd: _Optional[str] = ..., request_bytes: _Optional[int] = ..., response_bytes: _Optional[int] = ..., avg_latency_ms: _Optional[float] = ...) -> None: ...

class GetUsageSummaryRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "filter")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    filter: UsageFilter
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ...) -> None: ...

class GetUsageSummaryResponse(_message.Message):
    __slots__ = ("totals",)
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    totals: UsageTotals
    def __init__(self, totals: _Optional[_Union[UsageTotals, _Mapping]] = ...) -> None: ...

class GetUsageTimeSeriesRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "bucket", "filter")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    bucket: Bucket
    filter: UsageFilter
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket: _Optional[_Union[Bucket, str]] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ...) -> None: ...

class UsagePoint(_message.Message):
    __slots__ = ("bucket_time", "totals")
    BUCKET_TIME_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    bucket_time: _timestamp_pb2.Timestamp
    totals: UsageTotals
    def __init__(self, bucket_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., totals: _Optional[_Union[UsageTotals, _Mapping]] = ...) -> None: ...

class GetUsageTimeSeriesResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[UsagePoint]
    def __init__(self, points: _Optional[_Iterable[_Union[UsagePoint, _Mapping]]] = ...) -> None: ...

class ListTopUsageRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "by", "metric", "limit", "filter")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    by: TopDimension
    metric: TopMetric
    limit: int
    filter: UsageFilter
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., by: _Optional[_Union[TopDimension, str]] = ..., metric: _Optional[_Union[TopMetric, str]] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ...) -> None: ...

class TopUsageEntry(_message.Message):
    __slots__ = ("key", "totals")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    key: str
    totals: UsageTotals
    def __init__(self, key: _Optional[str] = ..., totals: _Optional[_Union[UsageTotals, _Mapping]] = ...) -> None: ...

class ListTopUsageResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[TopUsageEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[TopUsageEntry, _Mapping]]] = ...) -> None: ...

class ListDenialsByPolicyRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "filter")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    filter: UsageFilter
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ...) -> None: ...

class PolicyDenials(_message.Message):
    __slots__ = ("policy_id", "denials")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    DENIALS_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    denials: int
    def __init__(self, policy_id: _Optional[str] = ..., denials: _Optional[int] = ...) -> None: ...

class ListDenialsByPolicyResponse(_message.Message):
    __slots__ = ("denials",)
    DENIALS_FIELD_NUMBER: _ClassVar[int]
    denials: _containers.RepeatedCompositeFieldContainer[PolicyDenials]
    def __init__(self, denials: _Optional[_Iterable[_Union[PolicyDenials, _Mapping]]] = ...) -> None: ...

class ListRecentRequestsRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: UsageFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class RequestRecord(_message.Message):
    __slots__ = ("request_id", "start_time", "org_id", "app_id", "environment", "api_key_id", "provider", "model", "decision", "status_code", "streamed", "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms", "cost_usd", "denied_by", "shadow_violations", "post_violations", "upstream_account")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    DENIED_BY_FIELD_NUMBER: _ClassVar[int]
    SHADOW_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    POST_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    start_time: _timestamp_pb2.Timestamp
    org_id: str
    app_id: str
    environment: str
    api_key_id: str
    provider: str
    model: str
    decision: str
    status_code: int
    streamed: bool
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_ms: float
    cost_usd: str
    denied_by: str
    shadow_violations: _containers.RepeatedScalarFieldContainer[str]
    post_violations: _containers.RepeatedScalarFieldContainer[str]
    upstream_account: str
    def __init__(self, request_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., org_id: _Optional[str] = ..., app_id: _Optional[str] = ..., environment: _Optional[str] = ..., api_key_id: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., decision: _Optional[str] = ..., status_code: _Optional[int] = ..., streamed: _Optional[bool] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., latency_ms: _Optional[float] = ..., cost_usd: _Optional[str] = ..., denied_by: _Optional[str] = ..., shadow_violations: _Optional[_Iterable[str]] = ..., post_violations: _Optional[_Iterable[str]] = ..., upstream_account: _Optional[str] = ...) -> None: ...

class ListRecentRequestsResponse(_message.Message):
    __slots__ = ("requests", "next_page_token")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RequestRecord]
    next_page_token: str
    def __init__(self, requests: _Optional[_Iterable[_Union[RequestRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetUsageCoverageRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "page_size", "page_token")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class CoverageEntry(_message.Message):
    __slots__ = ("provider", "operation", "unit", "requests", "allowed", "denied", "quantity", "cost_usd", "unpriced_allowed")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    DENIED_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    provider: str
    operation: str
    unit: str
    requests: int
    allowed: int
    denied: int
    quantity: str
    cost_usd: str
    unpriced_allowed: int
    def __init__(self, provider: _Optional[str] = ..., operation: _Optional[str] = ..., unit: _Optional[str] = ..., requests: _Optional[int] = ..., allowed: _Optional[int] = ..., denied: _Optional[int] = ..., quantity: _Optional[str] = ..., cost_usd: _Optional[str] = ..., unpriced_allowed: _Optional[int] = ...) -> None: ...

class GetUsageCoverageResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[CoverageEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[CoverageEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
