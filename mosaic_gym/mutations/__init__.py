"""The mutation audit of a template's checks (``mosaic-gym check --mutate``)."""

from mosaic_gym.mutations.audit import Loose, Verdict, audit_suite, audit_template

__all__ = ["Loose", "Verdict", "audit_suite", "audit_template"]
