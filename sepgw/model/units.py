"""Multiplier/value quantities and other small value structures of 2030.5-2018.

A quantity is ``value × 10^multiplier`` in the unit its type names (W, var, V, VA, Ah, Wh…).
"""

from .codec import Model, complex_type
from .types import (
    BoolT, DERUnitRefTypeT, Int16T, Int32T, Int48T, Pow10T, SignedPercentT, UInt16T, UInt32T,
    UInt48T, UomTypeT, UInt8T,
)

__all__ = [
    "ActivePower", "ReactivePower", "ApparentPower", "VoltageRMS", "CurrentRMS", "AmpereHour",
    "WattHour", "RealEnergy", "SignedRealEnergy", "FixedPointType", "ReactiveSusceptance",
    "PowerFactor", "PowerFactorWithExcitation", "FixedVar", "FreqDroopType", "UnitValueType",
    "Temperature",
]


@complex_type
class ActivePower(Model):
    multiplier: Pow10T
    value: Int16T


@complex_type
class ReactivePower(Model):
    multiplier: Pow10T
    value: Int16T


@complex_type
class ApparentPower(Model):
    multiplier: Pow10T
    value: UInt16T


@complex_type
class VoltageRMS(Model):
    multiplier: Pow10T
    value: UInt16T


@complex_type
class CurrentRMS(Model):
    multiplier: Pow10T
    value: UInt16T


@complex_type
class AmpereHour(Model):
    multiplier: Pow10T
    value: UInt16T


@complex_type
class WattHour(Model):
    multiplier: Pow10T
    value: UInt16T


@complex_type
class RealEnergy(Model):
    multiplier: Pow10T
    value: UInt48T


@complex_type
class SignedRealEnergy(Model):
    multiplier: Pow10T
    value: Int48T


@complex_type
class FixedPointType(Model):
    multiplier: Pow10T
    value: Int16T


@complex_type
class ReactiveSusceptance(Model):
    multiplier: Pow10T
    value: UInt16T


@complex_type
class PowerFactor(Model):
    displacement: UInt16T
    multiplier: Pow10T


@complex_type
class PowerFactorWithExcitation(Model):
    displacement: UInt16T
    excitation: BoolT
    multiplier: Pow10T


@complex_type
class FixedVar(Model):
    refType: DERUnitRefTypeT
    value: SignedPercentT


@complex_type
class FreqDroopType(Model):
    dBOF: UInt32T
    dBUF: UInt32T
    kOF: UInt16T
    kUF: UInt16T
    openLoopTms: UInt16T


@complex_type
class UnitValueType(Model):
    multiplier: Pow10T
    unit: UomTypeT
    value: Int32T


@complex_type
class Temperature(Model):
    multiplier: Pow10T
    subject: UInt8T
    value: Int16T
