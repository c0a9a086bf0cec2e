"""``unetfamily plan``: a training recipe derived from the dataset itself (nnU-Net's idea, in 2-D, per family).

:func:`make_plan` fingerprints the training images (:mod:`unetfamily.data.fingerprint`), applies the
rules of :mod:`unetfamily.plan.rules`, and fits each model's patch, batch and steps to the device and
the budget (:mod:`unetfamily.plan.fit`); the result is a :class:`Plan`, saved as readable YAML, whose
:meth:`Plan.config_for` is the training config of one model. docs/plan.md explains every rule.
"""
from unetfamily.plan.fit import Budget, FamilyFit
from unetfamily.plan.make import ModelSpec, make_plan, native_config
from unetfamily.plan.recipe import Plan, read_plan

__all__ = ["Budget", "FamilyFit", "ModelSpec", "Plan", "make_plan", "native_config", "read_plan"]
