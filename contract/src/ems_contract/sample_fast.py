"""The commonest telemetry payload decoded with msgspec: one sample in kWh and W, nothing wrong.

The ingest judges every message. On the benchmark's payload ``parse_telemetry`` (pydantic-core)
took 11.5-17.5 µs to parse, validate and build the models, ``decode_sample`` 7.9-9.9 µs, of
which msgspec's decode is 3.4-4.6 (timed together, same box). This is a
second definition of ``Sample`` for that one case, kept beside the model it mirrors: it may
refuse more than the model (anything it refuses goes to ``parse_telemetry``, which decides
and words the reason), never accept anything the model refuses, and what it accepts comes
out with the very values the model gives. tests/contract/test_sample_fast.py holds it to
that with the same crafted and randomly mutated payloads that check ``parse_telemetry_fast``
against the exact path.

msgspec is a dependency of the platform, not of this package: the device agent installs the
contract without it and never imports this module (``ems_contract`` does not either).

What it leaves to ``parse_telemetry``: batches (``"samples"``), ``units`` (the conversion),
a ``device_id`` other than the topic's, anything not ASCII or over the size limit, and every
payload with anything to reject.
"""

from __future__ import annotations

import string
from datetime import datetime
from typing import Annotated, Literal, NamedTuple

import msgspec

from ems_contract.models import BOOT_PATTERN, MAX_BATCH_BYTES, MEASUREMENTS, PhaseReading, Units
from ems_contract.timestamps import parse_timestamp

_NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class _Reading(msgspec.Struct, forbid_unknown_fields=True):
    """``PhaseReading``'s fields and bounds, in its order (checked below)."""

    voltage_rms: _NonNegative
    current_rms: _NonNegative
    power_watt: float
    power_var: float
    power_va: _NonNegative
    power_factor: Annotated[float, msgspec.Meta(ge=-1, le=1)]
    voltage_thd: _NonNegative
    current_thd: _NonNegative
    energy_kwh: float


class _Units(msgspec.Struct, forbid_unknown_fields=True):
    energy: Literal["Wh", "kWh", "MWh"] = "kWh"
    power: Literal["W", "kW"] = "W"


class _Sample(msgspec.Struct, forbid_unknown_fields=True):
    v: Literal[1]
    # parse_timestamp decides, as the model's validator does.
    ts: str | int
    seq: Annotated[int, msgspec.Meta(ge=0)]
    # BOOT_PATTERN's length here, its characters in decode_sample (``_BOOT_CHARS``): a
    # regular expression run per message cost more than the rest of the sample's checks.
    boot: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    phases: Annotated[
        dict[Literal["A", "B", "C"], _Reading], msgspec.Meta(min_length=1, max_length=3)
    ]
    units: _Units | None = None
    device_id: str | None = None


if (
    tuple(_Reading.__struct_fields__) != MEASUREMENTS
    or tuple(PhaseReading.model_fields) != MEASUREMENTS
):
    raise RuntimeError("_Reading must have PhaseReading's fields, in MEASUREMENTS order")
if tuple(_Units.__struct_fields__) != tuple(Units.model_fields):
    raise RuntimeError("_Units must have Units' fields")

_DECODER = msgspec.json.Decoder(_Sample)
#: The characters BOOT_PATTERN allows: stripping them leaves nothing of a valid boot id.
_BOOT_CHARS = string.ascii_letters + string.digits + "_.:-"
if BOOT_PATTERN != r"^[A-Za-z0-9_.:-]{1,64}$":
    raise RuntimeError("BOOT_PATTERN changed: update _Sample.boot and _BOOT_CHARS")
_as_tuple = msgspec.structs.astuple
_new = tuple.__new__


class FastSample(NamedTuple):
    ts: datetime
    seq: int
    boot: str
    #: Per phase, the nine MEASUREMENTS as floats, in wire order.
    phases: dict[str, tuple[float, ...]]


def decode_sample(device_id: str, payload: bytes) -> FastSample | None:
    """The sample of a payload with nothing to reject and nothing to convert, or None."""
    if len(payload) > MAX_BATCH_BYTES or not payload.isascii() or b'"samples"' in payload:
        return None
    try:
        sample = _DECODER.decode(payload)
    except msgspec.DecodeError:  # ValidationError included
        return None
    if (
        sample.units is not None
        or sample.device_id not in (None, device_id)
        or sample.boot.strip(_BOOT_CHARS)
    ):
        return None
    try:
        ts = parse_timestamp(sample.ts)
    except ValueError:
        return None
    phases: dict[str, tuple[float, ...]] = {
        name: _as_tuple(reading) for name, reading in sample.phases.items()
    }
    # FastSample(...) without NamedTuple's Python-level __new__ (once per message).
    return _new(FastSample, (ts, sample.seq, sample.boot, phases))
