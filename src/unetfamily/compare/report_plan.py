"""The report's account of a ``compare --plan`` recipe: what the plan chose, why, and how each model was fitted."""
from __future__ import annotations

from typing import Any

from unetfamily.compare.report_render import Block
from unetfamily.plan import Plan
from unetfamily.text import literal

__all__ = ["plan_summary", "plan_blocks"]

_SHOWN = ("scale", "resize", "normalization", "augment", "foreground", "loss", "optimizer", "validation")


def plan_summary(plan: Plan) -> dict[str, Any]:
    """What the report keeps of a plan (results.json ``protocol.plan``): choices, reasons, fits; not the fingerprint."""
    return {
        "budget": plan.request.get("budget"), "device": plan.device, "scale": plan.scale,
        "resize": plan.resize,
        "normalization": plan.normalization, "augment": plan.augment, "foreground": plan.foreground,
        "loss": plan.loss, "optimizer": plan.optimizer, "reasons": dict(plan.reasons),
        "families": {mid: {k: fit.to_dict()[k] for k in ("patch", "batch_size", "epochs", "steps_per_epoch",
                                                          "step_seconds", "validation_seconds", "peak_memory_mb")}
                     for mid, fit in plan.families.items()},
    }


def _value(key: str, plan: dict[str, Any]) -> str:
    value = plan.get(key)
    if key == "normalization" and isinstance(value, dict):
        mean = ", ".join(f"{m:.3g}" for m in value.get("mean", []))
        std = ", ".join(f"{s:.3g}" for s in value.get("std", []))
        clip = f", clip {value['clip']}" if value.get("clip") else ""
        return f"mean [{mean}], std [{std}]{clip}"
    if key == "resize":
        return "\u00d7".join(map(str, value)) if value else "no (one scale)"
    if key == "validation":
        return "sliding window"
    if key == "foreground" and isinstance(value, dict):
        shares = {f"{v:.2g}" for v in value.values()}
        return shares.pop() if len(shares) == 1 else ", ".join(f"{k} {v:.2g}" for k, v in value.items())
    if key == "optimizer" and isinstance(value, dict):
        return f"{value.get('name')} lr {value.get('lr')}, weight decay {value.get('weight_decay')}"
    if key == "loss" and isinstance(value, dict):
        return str(value.get("name")) + (f" {value['kwargs']}" if value.get("kwargs") else "")
    return str(value) if value is not None else ""


def plan_blocks(plan: dict[str, Any] | None) -> list[Block]:
    """Report blocks for ``protocol.plan``: nothing without a plan."""
    if not plan:
        return []
    reasons = plan.get("reasons", {})
    rows = [[key, literal(_value(key, plan)), literal(reasons.get(key, ""))] for key in _SHOWN if key in reasons]
    fits = [[mid, "\u00d7".join(map(str, f["patch"])), str(f["batch_size"]), f"{f['epochs']} \u00d7 {f['steps_per_epoch']}",
             f"{f['step_seconds']:.3g}", f"{f['validation_seconds']:.3g}",
             f"{f['peak_memory_mb']:.0f}" if f["peak_memory_mb"] > 0 else "\u2013",
             literal(reasons.get(f"families.{mid}", ""))] for mid, f in plan.get("families", {}).items()]
    return [
        ("h2", "Plan"),
        ("p", f"Every run trained with the recipe `unetfamily plan` derived from the training data and fitted to "
              f"{plan.get('device')} for {plan.get('budget')} (docs/plan.md explains each rule; the whole plan is "
              "plan.yaml beside this report)."),
        ("table", ["Choice", "Value", "Why"], rows),
        ("p", "Each model's fit (patch and batch from measured step costs; epochs \u00d7 steps per epoch):"),
        ("table", ["Model", "Patch", "Batch", "Epochs \u00d7 steps", "s/step", "s/validation", "Peak MB", "How"], fits),
    ]
