import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OfflineReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFLINE_REASON_UNSPECIFIED: _ClassVar[OfflineReason]
    OFFLINE_REASON_NOT_ONLINE: _ClassVar[OfflineReason]
    OFFLINE_REASON_WITHDRAWN: _ClassVar[OfflineReason]
    OFFLINE_REASON_LOST: _ClassVar[OfflineReason]
    OFFLINE_REASON_EXPIRED: _ClassVar[OfflineReason]
OFFLINE_REASON_UNSPECIFIED: OfflineReason
OFFLINE_REASON_NOT_ONLINE: OfflineReason
OFFLINE_REASON_WITHDRAWN: OfflineReason
OFFLINE_REASON_LOST: OfflineReason
OFFLINE_REASON_EXPIRED: OfflineReason

class RegisterRequest(_message.Message):
    __slots__ = ("certificate_pem", "email")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: str
    email: str
    def __init__(self, certificate_pem: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("client_id", "registered_at", "already_registered")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    ALREADY_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    registered_at: _timestamp_pb2.Timestamp
    already_registered: bool
    def __init__(self, client_id: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., already_registered: _Optional[bool] = ...) -> None: ...

class ReadyRequest(_message.Message):
    __slots__ = ("port", "addresses", "capabilities")
    class CapabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PORT_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    port: int
    addresses: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.ScalarMap[str, str]
    def __init__(self, port: _Optional[int] = ..., addresses: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReadyResponse(_message.Message):
    __slots__ = ("broadcast_id", "expires_at", "heartbeat_interval", "observed_address")
    BROADCAST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    broadcast_id: str
    expires_at: _timestamp_pb2.Timestamp
    heartbeat_interval: _duration_pb2.Duration
    observed_address: str
    def __init__(self, broadcast_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., observed_address: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("broadcast_id",)
    BROADCAST_ID_FIELD_NUMBER: _ClassVar[int]
    broadcast_id: str
    def __init__(self, broadcast_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("expires_at", "expires_in", "next_heartbeat_in")
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    NEXT_HEARTBEAT_IN_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    expires_in: _duration_pb2.Duration
    next_heartbeat_in: _duration_pb2.Duration
    def __init__(self, expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_in: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., next_heartbeat_in: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("email",)
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    email: str
    def __init__(self, email: _Optional[str] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("peer",)
    PEER_FIELD_NUMBER: _ClassVar[int]
    peer: Peer
    def __init__(self, peer: _Optional[_Union[Peer, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("peers", "next_page_token")
    PEERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    next_page_token: str
    def __init__(self, peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("email", "port", "addresses", "capabilities", "last_seen", "expires_at", "observed_address", "fingerprint")
    class CapabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    email: str
    port: int
    addresses: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.ScalarMap[str, str]
    last_seen: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    observed_address: str
    fingerprint: str
    def __init__(self, email: _Optional[str] = ..., port: _Optional[int] = ..., addresses: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Mapping[str, str]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., observed_address: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class OfflineRequest(_message.Message):
    __slots__ = ("broadcast_id",)
    BROADCAST_ID_FIELD_NUMBER: _ClassVar[int]
    broadcast_id: str
    def __init__(self, broadcast_id: _Optional[str] = ...) -> None: ...

class OfflineResponse(_message.Message):
    __slots__ = ("was_online",)
    WAS_ONLINE_FIELD_NUMBER: _ClassVar[int]
    was_online: bool
    def __init__(self, was_online: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("emails",)
    EMAILS_FIELD_NUMBER: _ClassVar[int]
    emails: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, emails: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("email", "online", "peer", "reason", "initial")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    email: str
    online: bool
    peer: Peer
    reason: OfflineReason
    initial: bool
    def __init__(self, email: _Optional[str] = ..., online: _Optional[bool] = ..., peer: _Optional[_Union[Peer, _Mapping]] = ..., reason: _Optional[_Union[OfflineReason, str]] = ..., initial: _Optional[bool] = ...) -> None: ...

class GetRegistrationRequest(_message.Message):
    __slots__ = ("email", "fingerprint")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    email: str
    fingerprint: str
    def __init__(self, email: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class GetRegistrationResponse(_message.Message):
    __slots__ = ("email", "fingerprint", "registered_at")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    email: str
    fingerprint: str
    registered_at: _timestamp_pb2.Timestamp
    def __init__(self, email: _Optional[str] = ..., fingerprint: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
