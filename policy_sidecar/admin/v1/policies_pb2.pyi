import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PolicyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_MODE_UNSPECIFIED: _ClassVar[PolicyMode]
    POLICY_MODE_ENFORCE: _ClassVar[PolicyMode]
    POLICY_MODE_SHADOW: _ClassVar[PolicyMode]

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    PHASE_PRE_REQUEST: _ClassVar[Phase]
    PHASE_POST_REQUEST: _ClassVar[Phase]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_ALLOW: _ClassVar[Verdict]
    VERDICT_DENY: _ClassVar[Verdict]
POLICY_MODE_UNSPECIFIED: PolicyMode
POLICY_MODE_ENFORCE: PolicyMode
POLICY_MODE_SHADOW: PolicyMode
PHASE_UNSPECIFIED: Phase
PHASE_PRE_REQUEST: Phase
PHASE_POST_REQUEST: Phase
VERDICT_UNSPECIFIED: Verdict
VERDICT_ALLOW: Verdict
VERDICT_DENY: Verdict

class Policy(_message.Message):
    __slots__ = ("id", "name", "type", "org_id", "app_id", "environment", "model_pattern", "mode", "priority", "enabled", "config", "version", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATTERN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    type: str
    org_id: str
    app_id: str
    environment: str
    model_pattern: str
    mode: PolicyMode
    priority: int
    enabled: bool
    config: _struct_pb2.Struct
    version: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., org_id: _Optional[str] = ..., app_id: _Optional[str] = ..., environment: _Optional[str] = ..., model_pattern: _Optional[str] = ..., mode: _Optional[_Union[PolicyMode, str]] = ..., priority: _Optional[int] = ..., enabled: _Optional[bool] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreatePolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class CreatePolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ("org_id", "app_id", "environment", "type", "page_size", "page_token")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    app_id: str
    environment: str
    type: str
    page_size: int
    page_token: str
    def __init__(self, org_id: _Optional[str] = ..., app_id: _Optional[str] = ..., environment: _Optional[str] = ..., type: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies", "next_page_token")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    next_page_token: str
    def __init__(self, policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdatePolicyRequest(_message.Message):
    __slots__ = ("policy", "update_mask")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdatePolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeletePolicyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CelExpression(_message.Message):
    __slots__ = ("source", "phase")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    source: str
    phase: Phase
    def __init__(self, source: _Optional[str] = ..., phase: _Optional[_Union[Phase, str]] = ...) -> None: ...

class ValidatePolicyRequest(_message.Message):
    __slots__ = ("config", "expression")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    config: PolicyConfig
    expression: CelExpression
    def __init__(self, config: _Optional[_Union[PolicyConfig, _Mapping]] = ..., expression: _Optional[_Union[CelExpression, _Mapping]] = ...) -> None: ...

class PolicyConfig(_message.Message):
    __slots__ = ("type", "config")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    type: str
    config: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ValidationError(_message.Message):
    __slots__ = ("field", "message", "line", "column")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    field: str
    message: str
    line: int
    column: int
    def __init__(self, field: _Optional[str] = ..., message: _Optional[str] = ..., line: _Optional[int] = ..., column: _Optional[int] = ...) -> None: ...

class ValidatePolicyResponse(_message.Message):
    __slots__ = ("valid", "errors")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    errors: _containers.RepeatedCompositeFieldContainer[ValidationError]
    def __init__(self, valid: _Optional[bool] = ..., errors: _Optional[_Iterable[_Union[ValidationError, _Mapping]]] = ...) -> None: ...

class SampleRequest(_message.Message):
    __slots__ = ("model", "org_id", "app_id", "environment", "provider", "request_size_bytes", "estimated_tokens", "stream", "max_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    org_id: str
    app_id: str
    environment: str
    provider: str
    request_size_bytes: int
    estimated_tokens: int
    stream: bool
    max_tokens: int
    def __init__(self, model: _Optional[str] = ..., org_id: _Optional[str] = ..., app_id: _Optional[str] = ..., environment: _Optional[str] = ..., provider: _Optional[str] = ..., request_size_bytes: _Optional[int] = ..., estimated_tokens: _Optional[int] = ..., stream: _Optional[bool] = ..., max_tokens: _Optional[int] = ...) -> None: ...

class SampleResponse(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "latency_ms", "response_size_bytes", "status_code")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    latency_ms: int
    response_size_bytes: int
    status_code: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cached_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., latency_ms: _Optional[int] = ..., response_size_bytes: _Optional[int] = ..., status_code: _Optional[int] = ...) -> None: ...

class TestPolicyRequest(_message.Message):
    __slots__ = ("policy_id", "policy", "request", "response", "counter_used")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    COUNTER_USED_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    policy: Policy
    request: SampleRequest
    response: SampleResponse
    counter_used: int
    def __init__(self, policy_id: _Optional[str] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., request: _Optional[_Union[SampleRequest, _Mapping]] = ..., response: _Optional[_Union[SampleResponse, _Mapping]] = ..., counter_used: _Optional[int] = ...) -> None: ...

class PolicyViolation(_message.Message):
    __slots__ = ("code", "message", "http_status", "details", "phase")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    http_status: int
    details: _struct_pb2.Struct
    phase: Phase
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., http_status: _Optional[int] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., phase: _Optional[_Union[Phase, str]] = ...) -> None: ...

class TestPolicyResponse(_message.Message):
    __slots__ = ("verdict", "applies", "reason", "violation", "shadow")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    APPLIES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VIOLATION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    verdict: Verdict
    applies: bool
    reason: str
    violation: PolicyViolation
    shadow: bool
    def __init__(self, verdict: _Optional[_Union[Verdict, str]] = ..., applies: _Optional[bool] = ..., reason: _Optional[str] = ..., violation: _Optional[_Union[PolicyViolation, _Mapping]] = ..., shadow: _Optional[bool] = ...) -> None: ...
