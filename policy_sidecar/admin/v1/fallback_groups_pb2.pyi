import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FallbackGroup(_message.Message):
    __slots__ = ("id", "name", "accounts", "version", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    accounts: _containers.RepeatedScalarFieldContainer[str]
    version: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., accounts: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateFallbackGroupRequest(_message.Message):
    __slots__ = ("fallback_group",)
    FALLBACK_GROUP_FIELD_NUMBER: _ClassVar[int]
    fallback_group: FallbackGroup
    def __init__(self, fallback_group: _Optional[_Union[FallbackGroup, _Mapping]] = ...) -> None: ...

class CreateFallbackGroupResponse(_message.Message):
    __slots__ = ("fallback_group",)
    FALLBACK_GROUP_FIELD_NUMBER: _ClassVar[int]
    fallback_group: FallbackGroup
    def __init__(self, fallback_group: _Optional[_Union[FallbackGroup, _Mapping]] = ...) -> None: ...

class GetFallbackGroupRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetFallbackGroupResponse(_message.Message):
    __slots__ = ("fallback_group",)
    FALLBACK_GROUP_FIELD_NUMBER: _ClassVar[int]
    fallback_group: FallbackGroup
    def __init__(self, fallback_group: _Optional[_Union[FallbackGroup, _Mapping]] = ...) -> None: ...

class ListFallbackGroupsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFallbackGroupsResponse(_message.Message):
    __slots__ = ("fallback_groups", "next_page_token")
    FALLBACK_GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fallback_groups: _containers.RepeatedCompositeFieldContainer[FallbackGroup]
    next_page_token: str
    def __init__(self, fallback_groups: _Optional[_Iterable[_Union[FallbackGroup, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateFallbackGroupRequest(_message.Message):
    __slots__ = ("fallback_group", "update_mask")
    FALLBACK_GROUP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    fallback_group: FallbackGroup
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, fallback_group: _Optional[_Union[FallbackGroup, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateFallbackGroupResponse(_message.Message):
    __slots__ = ("fallback_group",)
    FALLBACK_GROUP_FIELD_NUMBER: _ClassVar[int]
    fallback_group: FallbackGroup
    def __init__(self, fallback_group: _Optional[_Union[FallbackGroup, _Mapping]] = ...) -> None: ...

class DeleteFallbackGroupRequest(_message.Message):
    __slots__ = ("id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteFallbackGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
