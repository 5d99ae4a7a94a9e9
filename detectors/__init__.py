"""Streaming detectors: the pure, clock-free core that turns samples into transitions."""

from detectors.base import (
    LAYERS,
    Detector,
    Direction,
    Layer,
    Sample,
    ScoreObs,
    TickStats,
    Transition,
)
from detectors.binomial import BinomialDetector
from detectors.burnrate import BurnRateDetector
from detectors.cusum import CusumDetector
from detectors.defaults import RuleSpec, default_rules
from detectors.ewma import EwmaDetector
from detectors.factory import KINDS, build_detector, detector_from_state
from detectors.logmean import LogMeanDetector
from detectors.quality import QualityFusion
from detectors.rate import RateDetector
from detectors.seasonal import SeasonalDetector, hour_of_week
from detectors.sequential import SequentialDetector
from detectors.static import StaticThreshold

__all__ = [
    "KINDS",
    "LAYERS",
    "BinomialDetector",
    "BurnRateDetector",
    "CusumDetector",
    "Detector",
    "Direction",
    "EwmaDetector",
    "Layer",
    "LogMeanDetector",
    "QualityFusion",
    "RateDetector",
    "RuleSpec",
    "Sample",
    "ScoreObs",
    "SeasonalDetector",
    "SequentialDetector",
    "StaticThreshold",
    "TickStats",
    "Transition",
    "build_detector",
    "default_rules",
    "detector_from_state",
    "hour_of_week",
]
