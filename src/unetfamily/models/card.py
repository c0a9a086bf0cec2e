"""The model card (``README.md``) of a pretrained model folder, and what is passed in to fill it.

A card states what the model is (architecture, paper, parameters, MACs, inputs and outputs), and
what only its maker knows (training data and configuration, evaluation scores with their split,
intended use, limitations), which is passed in as a :class:`ModelCard`. Whatever is not passed
in is written as unknown, never guessed. The card starts with the YAML metadata the Hugging Face
Hub reads (``library_name``, ``pipeline_tag``, ``tags``, ``datasets`` and the scores as a
``model-index``, full precision); the text below it shows the same scores rounded.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

import yaml

from unetfamily.errors import ConfigError, unknown_choice
from unetfamily.models.families import PAPERS, family_of, model_label
from unetfamily.text import literal, printable

__all__ = ["ModelCard", "render_card", "card_metadata"]

_EVAL_KEYS = ("metric", "value", "split", "dataset", "scope")


@dataclass
class ModelCard:
    """What a model card says beyond what the model itself knows; None: unknown (the card says so).

    ``classes``, ``scale`` and ``resize`` also go into ``config.json``: a predictor resizes images
    by ``scale`` (the training data's ``data.scale``) or to ``resize`` = [H, W] (``data.resize``)
    as in training, and names the classes. ``evaluation`` rows are
    ``{"metric", "value", "split", "dataset", "scope"}`` (``split`` required; ``scope`` says
    whose score it is, e.g. "mean over seeds 0, 1, 2"). ``input_size`` = [H, W] is where MACs
    are counted (default: ``resize``, else 256 x 256); ``macs`` skips counting.
    """

    title: str | None = None
    summary: str | None = None
    source: str | None = None  # where the weights come from (a checkpoint, a comparison's run)
    training_data: dict[str, Any] | None = None
    training_config: dict[str, Any] | None = None
    evaluation: list[dict[str, Any]] | None = None
    evaluation_note: str | None = None
    classes: list[str] | None = None
    scale: float | None = None
    resize: list[int] | None = None
    input_size: list[int] | None = None
    macs: int | None = None
    intended_use: str | None = None
    limitations: list[str] | None = None
    license: str | None = None

    @classmethod
    def of(cls, value: ModelCard | Mapping[str, Any] | None) -> ModelCard:
        """``value`` as a checked card: a ModelCard, a mapping of its fields (unknown keys refused) or None."""
        if value is None:
            card = cls()
        elif isinstance(value, ModelCard):
            card = dataclasses.replace(value)
        elif isinstance(value, Mapping):
            known = [f.name for f in dataclasses.fields(cls)]
            for key in value:
                if key not in known:
                    raise unknown_choice("card: field", key, known, hint="the fields of unetfamily.models.ModelCard")
            card = cls(**dict(value))
        else:
            raise ConfigError(f"card={value!r} must be a ModelCard, a mapping of its fields, or None")
        card.check()
        return card

    def check(self) -> None:
        """ConfigError naming the field whose value cannot be written (a bad evaluation row, size or scale)."""
        for row in self.evaluation or []:
            if not isinstance(row, Mapping) or not isinstance(row.get("metric"), str) \
                    or not isinstance(row.get("split"), str):
                raise ConfigError(f"card.evaluation row {row!r} needs a 'metric' and a 'split' (text) and a 'value'")
            unknown = sorted(set(row) - set(_EVAL_KEYS))
            if unknown:
                raise ConfigError(f"card.evaluation row has unknown key(s) {unknown}; use {', '.join(_EVAL_KEYS)}")
            value = row.get("value")
            if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
                raise ConfigError(f"card.evaluation {row['metric']}: value={value!r} must be a number or null")
        for name in ("resize", "input_size"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size)):
                raise ConfigError(f"card.{name}={size!r} must be [height, width] in pixels (whole numbers >= 1)")
        if self.scale is not None and (isinstance(self.scale, bool) or not isinstance(self.scale, Real)
                                       or not math.isfinite(self.scale) or self.scale <= 0):
            raise ConfigError(f"card.scale={self.scale!r} must be a positive number (the data.scale factor)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _value(metric: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "not defined"
    return f"{value:.2f} px" if metric == "hd95" else f"{value:.4f}"


def _si(count: int) -> str:
    """``1.23 G``, ``45.6 M``, ``7.8 k`` or the count itself."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= factor:
            return f"{count / factor:.3g} {prefix}"
    return str(count)


def card_metadata(card: ModelCard, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The YAML front matter: Hub metadata and the evaluation scores as a ``model-index`` (values unrounded)."""
    meta: dict[str, Any] = {"library_name": "unetfamily", "pipeline_tag": "image-segmentation",
                            "tags": ["unetfamily", "pytorch", "image-segmentation", "semantic-segmentation",
                                     facts["family"]]}
    if card.license:
        meta["license"] = card.license
    names = sorted({str(r["dataset"]) for r in card.evaluation or [] if r.get("dataset")})
    if names:
        meta["datasets"] = names
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in card.evaluation or []:
        if row.get("value") is None or not math.isfinite(float(row["value"])):
            continue  # the Hub's model-index takes numbers only; the table says "not defined"
        key = (str(row.get("dataset") or "unknown"), str(row["split"]))
        name = f"{row['metric']}: {row['scope']}" if row.get("scope") else str(row["metric"])
        groups.setdefault(key, []).append({"type": row["metric"], "name": name, "value": float(row["value"])})
    if groups:
        meta["model-index"] = [{"name": card.title or facts["label"], "results": [
            {"task": {"type": "image-segmentation", "name": "Semantic segmentation"},
             "dataset": {"name": dataset, "type": dataset, "split": split}, "metrics": metrics}
            for (dataset, split), metrics in groups.items()]}]
    return meta


def _io_rows(card: ModelCard, facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    norm = facts.get("input_norm")
    if norm:
        clip = f"clip to [{norm['clip'][0]:g}, {norm['clip'][1]:g}], then " if norm.get("clip") else ""
        normalisation = f"inside the model: {clip}(x - mean) / std per channel, mean {norm['mean']}, std {norm['std']}"
    else:
        normalisation = "none: the model reads the [0, 1] image as it is"
    k = facts["num_classes"]
    output = (f"logits (N, {k}, H, W); " + ("sigmoid gives the foreground probability" if k == 1
                                              else "softmax over the classes, argmax gives the mask"))
    if facts.get("outputs"):
        output += f"; {facts['outputs']}"
    if card.resize:
        geometry = f"resize images to {card.resize[0]} x {card.resize[1]} (data.resize), as in training"
    elif card.scale and card.scale != 1:
        geometry = f"resize images by {card.scale:g} (data.scale), as in training"
    else:
        geometry = "none recorded: images at the size they are given" if card.training_data else "unknown"
    classes = ", ".join(literal(c) for c in card.classes) if card.classes else "unknown"
    return [("input", f"(N, {facts['in_channels']}, H, W) float in [0, 1], any H and W (padded to a multiple "
                      f"of {facts['size_multiple']} inside and cropped back)"),
            ("input normalisation", normalisation), ("input geometry", geometry), ("output", output),
            ("classes", classes)]


def _model_section(card: ModelCard, facts: Mapping[str, Any]) -> list[str]:
    macs = card.macs if card.macs is not None else facts.get("macs")
    size = facts.get("macs_input")
    rows = [("architecture", f"{facts['label']} (registry name `{facts['name']}`, class `{facts['class']}`)"),
            *_io_rows(card, facts), ("parameters", f"{facts['params']:,}"),
            ("MACs", "not counted" if macs is None else
             f"{_si(macs)} multiply-accumulates per image at {size} (convolutions and matrix products, "
             "counted by torch.utils.flop_counter)")]
    if facts["kwargs"].get("encoder"):
        weights = facts.get("encoder_weights")
        rows.append(("encoder", f"`{facts['kwargs']['encoder']}` backbone (docs/models.md, \"Pretrained encoders\"); "
                     + (f"initialised from `{weights['file']}`" if weights else "initial weights not recorded")
                     + (f" (SHA-256 {weights['sha256'][:16]}...)" if weights and weights.get("sha256") else "")))
    lines = ["## Model", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "Rebuilt by `unetfamily.from_pretrained` as:", "", "```python",
             f"unetfamily.create_model({', '.join([repr(facts['name'])] + [f'{k}={v!r}' for k, v in facts['kwargs'].items()])})",
             "```", ""]
    paper = PAPERS.get(family_of(facts["name"]))
    if paper is not None:
        lines += ["## Paper", "", f"{', '.join(paper.authors)}: \"{paper.title}\", {paper.venue} {paper.year}, "
                  f"<{paper.url}>. This is unetfamily's implementation (its departures from the paper are listed "
                  "in unetfamily's docs/models.md), not the authors' code or weights.", ""]
    return lines


def _mapping_lines(value: Mapping[str, Any]) -> list[str]:
    return [f"- {literal(key)}: `{printable(item)}`" if isinstance(item, (Mapping, list)) else
            f"- {literal(key)}: {literal(item)}" for key, item in value.items()]


def _training_sections(card: ModelCard) -> list[str]:
    data = (_mapping_lines(card.training_data) if card.training_data else
            ["Unknown: the training data was not recorded with these weights (they were saved from a model "
             "alone). Nothing is known about what the model was trained on, or whether it was trained at all."])
    config = (_mapping_lines(card.training_config) if card.training_config else
              ["Unknown: the training configuration was not recorded with these weights."])
    return ["## Training data", "", *data, "", "## Training configuration", "", *config, ""]


def _evaluation_section(card: ModelCard) -> list[str]:
    lines = ["## Evaluation", ""]
    if not card.evaluation:
        lines += ["Unknown: no evaluation is recorded with these weights. Evaluate them on your own held-out "
                  "data (`unetfamily eval`) before relying on them.", ""]
    else:
        lines += ["| metric | split | dataset | whose score | value |", "|---|---|---|---|---|"]
        lines += [f"| {literal(r['metric'])} | {literal(r['split'])} | {literal(r.get('dataset') or 'unknown')} | "
                  f"{literal(r.get('scope') or '')} | "
                  f"{_value(r['metric'], r.get('value'))} |" for r in card.evaluation]
        lines.append("")
    if card.evaluation_note:
        lines += [card.evaluation_note, ""]
    return lines


def _use_sections(card: ModelCard, facts: Mapping[str, Any]) -> list[str]:
    data = (card.training_data or {}).get("name") or (card.training_data or {}).get("type")
    use = card.intended_use or (
        f"Research and prototyping of 2-D semantic segmentation of images like its training data "
        f"({literal(data) if data else 'unknown'}). Not validated for clinical or other safety-critical decisions.")
    limits = [
        "Its scores hold for the data and split named above only; other image sources, resolutions, "
        "channels or label conventions need their own evaluation.",
        f"It expects {facts['in_channels']}-channel images scaled to [0, 1] as in training; other value ranges "
        "give wrong predictions without any error.",
    ]
    if not card.training_data:
        limits.append("Its training data is unknown (see above).")
    limits += list(card.limitations or [])
    return ["## Intended use", "", use, "", "## Limitations", "", *(f"- {item}" for item in limits), ""]


def render_card(card: ModelCard, facts: Mapping[str, Any]) -> str:
    """The ``README.md`` text for ``card`` and ``facts`` (what the model says about itself, from
    :func:`unetfamily.models.pretrained.model_facts`)."""
    title = card.title or f"{facts['label']} for 2-D semantic segmentation"
    summary = card.summary or (f"A {facts['label']} ({facts['num_classes']} output channel"
                               f"{'s' if facts['num_classes'] != 1 else ''}) saved by unetfamily {facts['version']}.")
    files = [f"- `config.json`: how to rebuild the model (format {facts['format']} version {facts['format_version']}), "
             "its input geometry and classes", "- `model.safetensors`: the weights (safetensors: loading runs no code)",
             "- `README.md`: this card"]
    lines = ["---", yaml.safe_dump(card_metadata(card, facts), sort_keys=False).rstrip(), "---", "", f"# {title}", "",
             summary, ""]
    if card.source:
        lines += [f"Source: {card.source}", ""]
    lines += _model_section(card, facts)
    lines += ["## How to use", "", "```python", "import unetfamily", "",
              'model = unetfamily.from_pretrained("<this folder or its Hub repository>")  # eval mode',
              "logits = model(images)  # images: (N, C, H, W) float in [0, 1]", "```", "",
              "`unetfamily predict --checkpoint <this folder> IMAGES --out OUT` predicts files with the input "
              "geometry above (tiled for large images).", ""]
    lines += _training_sections(card) + _evaluation_section(card) + _use_sections(card, facts)
    lines += ["## Files", "", *files, ""]
    return "\n".join(lines)
