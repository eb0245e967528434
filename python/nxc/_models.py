# SPDX-License-Identifier: Apache-2.0
"""SerializedDescriptor and RdmaMetadata: the wire types.

Pydantic models when pydantic is importable (v1 or v2), so that a caller's
own request model can carry RdmaMetadata as a field; plain classes with the
same methods otherwise. Under either, the v2 method names (model_dump,
model_dump_json, model_validate, model_validate_json) exist, and
model_dump_json() of an RdmaMetadata is exactly nxc's metadata text
(compact JSON, keys in the order docs/metadata.md gives)."""

import json

__all__ = ["SerializedDescriptor", "RdmaMetadata", "metadata_text", "from_nxc_text", "HAVE_PYDANTIC"]

try:
    import pydantic

    HAVE_PYDANTIC = True
    PYDANTIC_V2 = int(pydantic.VERSION.split(".")[0]) >= 2
except ImportError:  # pragma: no cover - exercised only without pydantic
    HAVE_PYDANTIC = False
    PYDANTIC_V2 = False


def _desc_dict(d):
    return {"device": d.device, "ptr": d.ptr, "size": d.size}


def _md_dict(m):
    return {
        "descriptors": [_desc_dict(d) for d in m.descriptors],
        "nixl_metadata": m.nixl_metadata,
        "notification_key": m.notification_key,
        "operation_kind": m.operation_kind,
    }


# One encoder for every call: json.dumps with separators builds a new one
# each time, a third of encoding a one-descriptor text.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def _compact(obj):
    return _encode(obj)


# The texts of models made by from_nxc_text(), by id(model), with the model
# itself (so that the id cannot be reused while the entry lives). Models are
# immutable: a text, once known, stays the model's. Bounded: the oldest go.
_TEXTS = {}
_TEXTS_MAX = 1024


# The bytes JSON escapes inside a string, beside every non-ASCII character.
_ESCAPED = bytes(range(0x20)) + b'\x7f"\\'


def _plain(strs):
    """Do these strs read in JSON exactly as they are between their quotes?
    (printable ASCII, no quote, no backslash: one scan of them all, which is
    a third of str.isprintable's time)"""
    joined = "".join(strs)
    if not joined.isascii():
        return False
    raw = joined.encode("ascii")
    return len(raw.translate(None, _ESCAPED)) == len(raw)


def _plain_text(m):
    """The text _compact(_md_dict(m)) gives, built by formatting: a quarter
    of the encoder's time for a one-descriptor text. None where a field is
    anything but a plain str or an int (escapes, bool, subclasses): the
    encoder does those."""
    strs = [m.nixl_metadata, m.notification_key]
    parts = []
    for d in m.descriptors:
        dev, ptr, size = d.device, d.ptr, d.size
        if type(dev) is not str or type(ptr) is not int or type(size) is not int:
            return None
        strs.append(dev)
        parts.append('{"device":"%s","ptr":%d,"size":%d}' % (dev, ptr, size))
    kind = m.operation_kind
    if type(strs[0]) is not str or type(strs[1]) is not str or type(kind) is not int or not _plain(strs):
        return None
    return '{"descriptors":[%s],"nixl_metadata":"%s","notification_key":"%s","operation_kind":%d}' % (
        ",".join(parts), strs[0], strs[1], kind)


def metadata_text(m):
    """nxc's metadata text for an RdmaMetadata."""
    known = _TEXTS.get(id(m))
    if known is not None and known[0] is m:
        return known[1]
    text = _plain_text(m)
    return text if text is not None else _compact(_md_dict(m))


def _remember(model, text):
    if len(_TEXTS) >= _TEXTS_MAX:
        del _TEXTS[next(iter(_TEXTS))]
    _TEXTS[id(model)] = (model, text)
    return model


if HAVE_PYDANTIC and PYDANTIC_V2:  # pragma: no cover - Debian 12 ships v1
    from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr

    class SerializedDescriptor(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        device: StrictStr = "cpu"
        ptr: StrictInt = 0
        size: StrictInt = 0

    class RdmaMetadata(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        descriptors: list[SerializedDescriptor] = []
        nixl_metadata: StrictStr = ""
        notification_key: StrictStr = ""
        operation_kind: StrictInt = 0

        def model_dump_json(self, **kw):
            if kw:
                return super().model_dump_json(**kw)
            return metadata_text(self)

elif HAVE_PYDANTIC:
    from typing import List

    from pydantic import BaseModel, StrictInt, StrictStr

    class _V2Names:
        """pydantic v2's method names on a v1 model."""

        def model_dump(self, **kw):
            return self.dict(**kw)

        def model_dump_json(self, **kw):
            if kw:
                return self.json(**kw)
            return _compact(self.dict())

        @classmethod
        def model_validate(cls, obj):
            return cls.parse_obj(obj)

        @classmethod
        def model_validate_json(cls, text):
            return cls.parse_raw(text)

    class SerializedDescriptor(_V2Names, BaseModel):
        device: StrictStr = "cpu"
        ptr: StrictInt = 0
        size: StrictInt = 0

        class Config:
            extra = "forbid"
            allow_mutation = False

    class RdmaMetadata(_V2Names, BaseModel):
        descriptors: List[SerializedDescriptor] = []
        nixl_metadata: StrictStr = ""
        notification_key: StrictStr = ""
        operation_kind: StrictInt = 0

        class Config:
            extra = "forbid"
            allow_mutation = False

        def model_dump_json(self, **kw):
            if kw:
                return self.json(**kw)
            return metadata_text(self)

else:  # pragma: no cover

    class _Plain:
        _fields = ()

        def __init__(self, **kw):
            extra = set(kw) - set(self._fields)
            if extra:
                raise ValueError(f"{type(self).__name__}: unknown fields {sorted(extra)}")
            for k, default in self._defaults().items():
                object.__setattr__(self, k, kw.get(k, default))

        def __setattr__(self, k, v):
            raise TypeError(f"{type(self).__name__} is immutable")

        def __eq__(self, other):
            return type(self) is type(other) and self.model_dump() == other.model_dump()

        def __repr__(self):
            return f"{type(self).__name__}({self.model_dump()!r})"

        def model_dump(self, **kw):
            return json.loads(self.model_dump_json())

        @classmethod
        def model_validate_json(cls, text):
            return cls.model_validate(json.loads(text))

    class SerializedDescriptor(_Plain):
        _fields = ("device", "ptr", "size")

        @staticmethod
        def _defaults():
            return {"device": "cpu", "ptr": 0, "size": 0}

        def model_dump_json(self, **kw):
            return _compact(_desc_dict(self))

        @classmethod
        def model_validate(cls, obj):
            return obj if isinstance(obj, cls) else cls(**obj)

    class RdmaMetadata(_Plain):
        _fields = ("descriptors", "nixl_metadata", "notification_key", "operation_kind")

        @staticmethod
        def _defaults():
            return {"descriptors": [], "nixl_metadata": "", "notification_key": "", "operation_kind": 0}

        def model_dump_json(self, **kw):
            return metadata_text(self)

        @classmethod
        def model_validate(cls, obj):
            if isinstance(obj, cls):
                return obj
            obj = dict(obj)
            obj["descriptors"] = [SerializedDescriptor.model_validate(d) for d in obj.get("descriptors", [])]
            return cls(**obj)


def from_nxc_text(text):
    """The RdmaMetadata of a text nxc itself wrote (nxc_op_metadata): its
    fields are already checked, so the model is built without validating
    them again (pydantic's validation was most of a passive op's metadata()
    call), and its text is kept for model_dump_json() and begin_*."""
    d = json.loads(text)
    descs = d["descriptors"]
    if HAVE_PYDANTIC and PYDANTIC_V2:  # pragma: no cover - Debian 12 ships v1
        model = RdmaMetadata.model_construct(
            descriptors=[SerializedDescriptor.model_construct(**x) for x in descs],
            nixl_metadata=d["nixl_metadata"], notification_key=d["notification_key"],
            operation_kind=d["operation_kind"])
    elif HAVE_PYDANTIC:
        model = RdmaMetadata.construct(
            descriptors=[SerializedDescriptor.construct(**x) for x in descs],
            nixl_metadata=d["nixl_metadata"], notification_key=d["notification_key"],
            operation_kind=d["operation_kind"])
    else:  # pragma: no cover - exercised only without pydantic
        model = RdmaMetadata.model_validate(d)
    return _remember(model, text if isinstance(text, str) else text.decode())
