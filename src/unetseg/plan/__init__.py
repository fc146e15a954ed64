"""A training plan from the dataset's fingerprint, the machine and the time budget: ``fingerprint`` measures
the dataset, ``probe`` times training steps on this machine, ``planner`` makes the choices."""

from unetseg.plan.fingerprint import Fingerprint, fingerprint
from unetseg.plan.planner import AUDIO_BASE_WIDTH, Choice, Plan, make_plan, median_frequency_weights, sample_weights
from unetseg.plan.probe import machine

__all__ = ["AUDIO_BASE_WIDTH", "Choice", "Fingerprint", "Plan", "fingerprint", "machine", "make_plan",
           "median_frequency_weights", "sample_weights"]
