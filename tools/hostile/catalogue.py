"""The whole catalogue, in report order, and selections of it."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from . import cases_crash, cases_data, cases_loss, cases_names, cases_plan, cases_ranges, cases_realdata, \
    cases_resume, cases_scale, cases_unclear
from .model import CLASSES, Case

__all__ = ["CASES", "FAST_CASES", "select"]


def _checked(cases: Iterable[Case], fast: frozenset[str]) -> list[Case]:
    """The cases, ``fast`` flagged on those named in ``fast``; names unique, classes known."""
    out, seen = [], set()
    for c in cases:
        if c.name in seen:
            raise ValueError(f"two hostile cases are named {c.name!r}")
        if c.klass not in CLASSES:
            raise ValueError(f"{c.name}: unknown class {c.klass!r}")
        seen.add(c.name)
        out.append(dataclasses.replace(c, fast=c.name in fast))
    unknown = fast - seen
    if unknown:
        raise ValueError(f"FAST names cases that do not exist: {sorted(unknown)}")
    return out


#: The test suite's subset: refused before any training when the expectation holds (under a second
#: each with warm processes), one or a few of every topic. The full catalogue runs with tools/hostile.py.
FAST = frozenset({
    # data_loss
    "train_again_without_resume", "train_output_dir_is_a_file", "predict_into_input_folder",
    "predict_over_previous_results", "predict_same_stem_two_folders", "predict_overlay_clobbers_other_mask",
    "labelme_into_previous_conversion", "eval_out_over_checkpoint", "compare_out_is_a_file",
    # silently_wrong: budget, nan, ranges, options, data
    "resume_changed_lr", "resume_changed_model", "resume_without_a_run", "resume_last_checkpoint_missing",
    "resume_and_overwrite", "resume_nonfinite_checkpoint", "eval_nonfinite_checkpoint", "train_image_with_nan",
    "train_nan_in_val_split", "predict_image_with_nan",
    "train_train_grad_clip_minus1", "train_loader_batch_size_0", "train_optim_lr_minus1", "train_optim_lr_nan",
    "train_train_epochs_0", "train_train_seed_minus1", "train_data_size_0", "train_model_kwargs_channels_0_8",
    "eval_threshold_5", "predict_overlap_1", "export_size_negative", "compare_seeds_0", "compare_models_empty",
    "bench_repeats_0", "labelme_ignore_index_is_a_class",
    "predict_level_on_unet", "train_ds_weights_on_unet", "eval_data_other_classes", "train_fp16_on_cpu",
    "mixed_gray_rgb_train", "binary_mask_three_values", "corrupt_image_in_val",
    "leak_train_val_strict", "tiff_slices_reversed", "tiff_slices_letters", "compare_broken_test_list",
    "crlf_list_files",
    # traceback_or_hang: disk, special, malformed, names, numbers
    "train_disk_full_before_start", "predict_disk_full", "eval_disk_full", "labelme_disk_full",
    "config_is_a_fifo", "train_image_is_a_fifo", "predict_fifo_among_images", "checkpoint_is_a_fifo",
    "train_image_symlink_loop", "config_yaml_syntax_error", "config_toml_wrong_type", "override_without_equals",
    "override_exponent_for_int", "checkpoint_truncated", "labelme_not_an_object",
    "train_model_misspelled", "train_loss_misspelled", "train_device_gpu", "train_model_kwarg_misspelled",
    "eval_split_misspelled", "compare_model_misspelled", "bench_model_misspelled", "mask_encoding_misspelled",
    "predict_max_pixels_below_image",
    # unclear
    "train_missing_config", "eval_missing_checkpoint", "predict_missing_input", "image_without_mask",
    "labelme_unlisted_label", "foreign_safetensors_checkpoint",
    # issue 14, real data (tools/hostile/cases_realdata.py; all refused or checked before any training)
    "template_without_id", "template_id_twice", "template_dotdot", "template_absolute", "regex_without_id_group",
    "regex_does_not_compile", "regex_empty_id", "image_without_mask_names_id", "two_files_one_id",
    "template_matches_nothing", "mapping_lacks_split", "roi_suffix_without_roi", "split_layout_with_splits",
    "train_template_mask_missing", "roi_other_size_info", "roi_other_size_check", "roi_other_size_train",
    "roi_is_a_fifo", "roi_missing_for_one_image", "animated_gif_image", "lossy_webp_mask_no_threshold",
    "truncated_lzw_tiff", "gif_masks_read_right", "convert_out_is_a_file", "convert_out_not_empty",
    "convert_split_misspelled", "convert_corrupt_image_empty_out", "convert_corrupt_image_overwrite",
    "convert_over_source_folders", "download_unknown_name", "download_to_is_a_file",
    "download_archive_not_an_archive", "download_zip_traversal", "download_zip_symlink", "download_zip_truncated",
    "download_zip_unrelated", "download_zip_fake_member", "download_zip_missing_files",
    "download_overwrite_bad_archive", "download_existing_without_overwrite",
    # plan
    "plan_data_missing", "plan_minutes_0", "plan_steps_negative", "plan_model_misspelled", "plan_out_exists",
    "train_plan_missing", "train_plan_not_a_plan", "train_plan_damaged", "train_plan_unknown_model",
    "train_plan_with_config", "train_model_without_plan", "compare_plan_auto_with_size", "compare_plan_missing_file",
    "compare_plan_without_the_model",
    # scale (issue 16): refused before Ray starts
    "compare_cpus_per_run_without_ray", "compare_executor_misspelled", "compare_gpus_per_run_negative",
    "compare_gpus_for_cpu_runs",
})

CASES: list[Case] = _checked([
    *cases_loss.CASES, *cases_resume.CASES, *cases_ranges.CASES, *cases_data.CASES,
    *cases_crash.CASES, *cases_names.CASES, *cases_unclear.CASES, *cases_realdata.CASES, *cases_plan.CASES,
    *cases_scale.CASES,
], FAST)
FAST_CASES: list[Case] = [c for c in CASES if c.fast]


def select(only: str = "", fast: bool = False) -> list[Case]:
    """Cases whose class, topic, owner or name is among the comma-separated ``only`` (all when empty)."""
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    chosen = FAST_CASES if fast else CASES
    if not wanted:
        return list(chosen)
    return [c for c in chosen if wanted & {c.klass, c.topic, c.owner, c.name}]
