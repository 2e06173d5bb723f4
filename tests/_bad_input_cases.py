"""The bad-input suite of issue 14 in one table: every case, the defect class it belongs to, its
entry point, what it feeds in, the error it must give and the test that checks it.

Defect classes (the issue's numbering): 1 NaN is silent, 2 path escape and empty splits,
3 batch-time failures, 4 memory blow-ups from tiny files, 5 raw tracebacks, 6 ignored values,
7 reproducibility, 8 quiet wrong reads, 9 untrusted configs, ``also`` the user-facing items.

Tests that keep their own parameter tables (``BAD_PRETRAIN`` and ``BAD_COMMANDS`` in
test_multitask_cli.py) are read from there, so a case added to such a table is counted here
without a second list. The hostile-file sweep (test_hostile_inputs.py) checks that its worker
runs exactly the defect-4 cases listed here. ``tests/test_bad_input_summary.py`` checks that
every case points at a test that exists and names the input it claims, and counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFECTS = {
    "1": "NaN is silent",
    "2": "path escape / splits that make nothing",
    "3": "batch-time failures kill the run",
    "4": "memory blow-ups from tiny files",
    "5": "raw tracebacks",
    "6": "ignored values",
    "7": "reproducibility",
    "8": "quiet wrong reads",
    "9": "untrusted configs",
    "also": "user-facing (Also)",
}


@dataclass(frozen=True)
class Case:
    """One bad input.

    defect : key of :data:`DEFECTS`.
    id : unique within the table.
    entry : the entry point the input goes through (command, function or class).
    given : the bad file, value or situation; the test module (or a helper it uses) spells it
        out, and a message that should name a file names this one.
    error : the expected medfound error class (``medfound.errors``), or ``None`` where the right
        outcome is not an error (a value sanitised, an item skipped and listed, a run resumed).
    test : ``tests/<file>.py::<test function>`` that checks it.
    """

    defect: str
    id: str
    entry: str
    given: str
    error: str | None
    test: str


_BI = "tests/test_bad_items.py::"
_MBI = "tests/test_multitask_bad_items.py::"
_CLI = "tests/test_bad_cli_values.py::"
_IO = "tests/test_io_checks.py::"
_HOST = "tests/test_hostile_inputs.py::"
_GEO = "tests/test_bad_geometry.py::"
_FAULT = "tests/test_fault_injection.py::"
_DAC_WF = "tests/test_dac_workflow.py::"
_MISSING = "tests/test_missing_optional_packages.py::"

_SKIP_DAC = _BI + "test_dac_items_are_checked_one_by_one_and_skipped_with_their_file"
_RAISE_DAC = _BI + "test_dac_raise_mode_names_the_file"
_SKIP_MT = _MBI + "test_bad_samples_are_skipped_before_collation_and_the_run_finishes"
_SWEEP = _HOST + "test_every_crafted_file_gives_a_medfound_error_naming_it"
_PRESET = _GEO + "test_preset_refuses_a_volume_it_would_turn_into_a_cube"
_NO_ITK = _GEO + "test_loadimaged_by_reader_name_raises_the_refusal_and_never_falls_back_to_itk"
_DAC_TYPES = _DAC_WF + "test_config_values_of_the_wrong_type_are_one_line_errors"

CASES: tuple[Case, ...] = (
    # 1 -- non-finite values: skipped and listed, or an error naming the file; a non-finite loss stops the run
    Case("1", "dac-nan-tiff-skipped", "dac.data.prepare_items (skip)", "nan.tif", "NonFiniteImageError", _SKIP_DAC),
    Case("1", "dac-inf-npy-skipped", "dac.data.prepare_items (skip)", "inf.npy", "NonFiniteImageError", _SKIP_DAC),
    Case("1", "dac-nan-raised", "dac.data.PreparedDataset (raise)", "nan.tif", "NonFiniteImageError", _RAISE_DAC),
    Case("1", "pretrain-nan-skipped", "medfound pretrain (TaskDataset, skip)", "nan_1.tiff", "NonFiniteImageError",
         _SKIP_MT),
    Case("1", "pretrain-nan-raised", "multitask TaskDataset (raise)", "nan_0.tiff", "ImageReadError",
         _MBI + "test_raise_mode_names_the_file"),
    Case("1", "safe-load-nan", "io.SafeLoadImage(check_finite=True)", "nan.nii.gz", "NonFiniteImageError",
         _IO + "test_safe_load_errors_are_medfound_errors_naming_the_file"),
    Case("1", "dac-nonfinite-loss", "handlers.StopOnNonFiniteLoss (DAC)", "b2_0.png", "NonFiniteLossError",
         _BI + "test_non_finite_loss_stops_naming_task_and_items_and_keeps_the_last_good_checkpoint"),
    Case("1", "pretrain-nonfinite-loss", "medfound pretrain", "<in-memory image (1, 32, 32)>", "NonFiniteLossError",
         _MBI + "test_non_finite_loss_stops_naming_task_and_files_and_keeps_the_last_good_checkpoint"),
    # 2 -- names from data never leave the output folder; splits that would write nothing are errors
    Case("2", "split-domain-escape", "medfound dac split", "x/../../../../elsewhere/ESCAPED", None,
         _CLI + "test_split_file_names_never_leave_the_output_folder"),
    Case("2", "split-empty-datalist", "medfound dac split", "no items", "ConfigError",
         _CLI + "test_splits_that_make_nothing_are_errors"),
    Case("2", "split-one-domain", "medfound dac split", "at least 2 domains", "ConfigError",
         _CLI + "test_splits_that_make_nothing_are_errors"),
    Case("2", "split-labelled-is-test", "medfound dac split", "must differ from the test domain", "ConfigError",
         _CLI + "test_splits_that_make_nothing_are_errors"),
    Case("2", "resolve-inside", "utils.resolve_inside", "../etc/passwd", "ConfigError",
         "tests/test_utils.py::test_resolve_inside"),
    # 3 -- per-item checks before collation: a bad item is skipped and listed (or named), never a dead run
    Case("3", "dac-3d-volume-skipped", "dac.data.prepare_items (skip)", "vol.nii.gz", "InvalidImageError", _SKIP_DAC),
    Case("3", "dac-3d-volume-raised", "dac.data.PreparedDataset (raise)", "vol.nii.gz", "InvalidImageError",
         _RAISE_DAC),
    Case("3", "dac-mask-size-skipped", "dac.data.prepare_items (skip)", "lab16.png", "LabelMismatchError",
         _SKIP_DAC),
    Case("3", "dac-mask-size-raised", "dac.data.PreparedDataset (raise)", "lab16.png", "LabelMismatchError",
         _RAISE_DAC),
    Case("3", "dac-mask-size-not-resized", "dac.data.preprocessing", "lab16.png", "LabelMismatchError",
         _BI + "test_mask_of_another_size_is_a_label_mismatch_not_a_resize"),
    Case("3", "dac-tiff-among-pngs", "dac.data.prepare_items + collate", "rgb.tif", None, _SKIP_DAC),
    Case("3", "dac-error-without-file", "dac.data.prepare_items (raise)", "img.png", "ImageReadError",
         _BI + "test_dac_raise_mode_names_the_item_when_the_error_does_not"),
    Case("3", "dac-label-out-of-classes", "dac.data.preprocessing", "lab.png", "LabelMismatchError",
         _DAC_WF + "test_label_values_outside_the_classes_name_the_file"),
    Case("3", "pretrain-3d-volume-skipped", "medfound pretrain (TaskDataset, skip)", "vol_3.nii.gz",
         "InvalidImageError", _SKIP_MT),
    Case("3", "pretrain-rgba-skipped", "medfound pretrain (TaskDataset, skip)", "rgba_5.png", "InvalidImageError",
         _SKIP_MT),
    Case("3", "pretrain-grey-and-colour", "multitask collate_task_batch", "<in-memory image (1, 4, 4)>", None,
         _MBI + "test_grey_and_colour_samples_share_a_batch"),
    Case("3", "scan-cases-listed", "io.scan_cases", "wrong_label.nii.gz", "LabelMismatchError",
         _IO + "test_scan_cases_reports_bad_ones"),
    Case("3", "skip-bad-cases-loader", "io.SkipBadCases (DataLoader, 2 workers)", "corrupt.nii.gz", "ImageReadError",
         _IO + "test_skip_bad_cases_in_dataloader_with_workers"),
    # 4 -- crafted files of a few KB that declare gigabytes (ids: the hostile worker's case names)
    Case("4", "nifti/SafeLoadImage", "io.SafeLoadImage", "header_bomb.nii", "TooLargeError", _SWEEP),
    Case("4", "nifti/NibabelReader", "io.SafeLoadImage(NibabelReader)", "header_bomb.nii", "TooLargeError", _SWEEP),
    Case("4", "nifti/dac-data", "dac.data.prepare_items (raise)", "header_bomb.nii", "TooLargeError", _SWEEP),
    Case("4", "tiff/MicroscopyReader", "io.MicroscopyReader", "tile_bomb.tif", "TooLargeError", _SWEEP),
    Case("4", "tiff/SafeLoadImage", "io.SafeLoadImage", "tile_bomb.tif", "TooLargeError", _SWEEP),
    Case("4", "png/PhotoReader", "io.PhotoReader", "png_bomb.png", "TooLargeError", _SWEEP),
    Case("4", "png/dac-data", "dac.data.prepare_items (raise)", "png_bomb.png", "TooLargeError", _SWEEP),
    Case("4", "png/multitask-data", "multitask TaskDataset (raise)", "png_bomb.png", "TooLargeError", _SWEEP),
    Case("4", "dicom/RadiographReader", "io.RadiographReader", "dicom_bomb.dcm", "TooLargeError", _SWEEP),
    Case("4", "umedpt_stride0/convert-umedpt", "medfound convert-umedpt", "stride0.pt.zip", "TooLargeError",
         _SWEEP),
    Case("4", "umedpt_deflate_bomb/convert-umedpt", "medfound convert-umedpt", "deflate_bomb.pt.zip",
         "TooLargeError", _SWEEP),
    Case("4", "limit-configurable", "io.SafeLoadImage + MEDFOUND_MAX_BYTES", "slide.tif", "TooLargeError",
         _HOST + "test_the_limit_is_configurable_and_a_region_counts_alone"),
    # 5 -- one line naming the file or key, never a traceback (BAD_PRETRAIN is added from its test module)
    Case("5", "dac-train-torn-last-pt", "medfound dac train", "last.pt", "WeightsError",
         _CLI + "test_a_truncated_last_pt_is_one_line_naming_it"),
    Case("5", "dac-evaluate-torn-model-pt", "medfound dac evaluate", "model.pt", "WeightsError",
         _CLI + "test_a_truncated_last_pt_is_one_line_naming_it"),
    Case("5", "resume-torn-zip", "handlers.CheckpointResume", "last.pt", "WeightsError",
         "tests/test_handlers_checkpoint.py::test_bad_checkpoint_is_a_clear_error"),
    Case("5", "resume-malicious-pickle", "handlers.CheckpointResume", "last.pt", "WeightsError",
         "tests/test_handlers_checkpoint.py::test_malicious_pickle_is_refused"),
    Case("5", "convert-umedpt-output-blocked", "medfound convert-umedpt", "a file where the output folder should go",
         "ConfigError", _CLI + "test_convert_umedpt_output_folder_that_cannot_be_created_is_one_line"),
    Case("5", "safe-load-corrupt-nifti", "io.SafeLoadImaged", "corrupt.nii.gz", "ImageReadError",
         _IO + "test_safe_load_errors_are_medfound_errors_naming_the_file"),
    Case("5", "safe-load-missing-file", "io.SafeLoadImage", "nowhere.nii.gz", "ImageReadError",
         _IO + "test_safe_load_errors_are_medfound_errors_naming_the_file"),
    Case("5", "pretrain-config-broken-yaml", "medfound pretrain", "broken.yaml", "ConfigError",
         "tests/test_multitask_cli.py::test_config_file_errors_name_the_file"),
    Case("5", "pretrain-config-not-a-dict", "medfound pretrain", "list.json", "ConfigError",
         "tests/test_multitask_cli.py::test_config_file_errors_name_the_file"),
    Case("5", "dac-split-file-missing", "dac.data.load_split", "missing.json", "DatasetLayoutError",
         _DAC_WF + "test_split_file_errors_name_the_file"),
    Case("5", "dac-config-not-json", "dac.config.load_config", "bad.json", "ConfigError",
         _DAC_WF + "test_config_rejects_bad_values_and_reads_files"),
    Case("5", "dac-config-batch-two", "dac.config.DACConfig", "'two'", "ConfigError", _DAC_TYPES),
    Case("5", "dac-config-lr-string", "dac.config.DACConfig", "'0.01'", "ConfigError", _DAC_TYPES),
    Case("5", "dac-config-lr-negative", "dac.config.DACConfig", "-0.01", "ConfigError", _DAC_TYPES),
    Case("5", "dac-config-bool-string", "dac.config.DACConfig", "'yes'", "ConfigError", _DAC_TYPES),
    Case("5", "dac-config-pair-order", "dac.config.DACConfig", "[0.5, 0.25]", "ConfigError", _DAC_TYPES),
    Case("5", "dac-config-size-too-small", "dac.config.DACConfig", "[4, 4]", "ConfigError", _DAC_TYPES),
    Case("5", "dac-config-epochs-zero", "dac.config.DACConfig", "train.max_epochs must be", "ConfigError",
         _DAC_TYPES),
    Case("5", "dac-config-device-int", "dac.config.DACConfig", "train.device must be a string", "ConfigError",
         _DAC_TYPES),
    # 6 -- values that used to vanish (BAD_COMMANDS is added from its test module)
    Case("6", "task-negative-spatial-size", "multitask.load_tasks", "spatial_size must be an integer >= 1, got -5",
         "ConfigError", "tests/test_multitask_tasks.py::test_bad_task_configs"),
    Case("6", "task-zero-spatial-size", "multitask.load_tasks", "spatial_size\\[1\\] must be an integer >= 1, got 0",
         "ConfigError", "tests/test_multitask_tasks.py::test_bad_task_configs"),
    # 7 -- reproducible runs, whole histories, no temporaries left
    Case("7", "pretrain-seed-defaulted-and-recorded", "medfound pretrain", "seed 0", None,
         "tests/test_multitask_cli.py::test_pretrain_command_writes_weights_and_resumes_with_the_whole_history"),
    Case("7", "pretrain-history-after-resume", "medfound pretrain", "history.json", None,
         "tests/test_multitask_cli.py::test_pretrain_command_writes_weights_and_resumes_with_the_whole_history"),
    Case("7", "no-seed-two-runs-identical", "medfound dac train / medfound pretrain", "reference", None,
         _FAULT + "test_two_runs_without_a_seed_are_identical"),
    Case("7", "sigkill-between-checkpoints", "medfound dac train / medfound pretrain", "iteration", None,
         _FAULT + "test_killed_run_resumes_bit_identically_and_leaves_no_temporary"),
    Case("7", "sigkill-inside-checkpoint-write", "medfound dac train / medfound pretrain", "write", None,
         _FAULT + "test_killed_run_resumes_bit_identically_and_leaves_no_temporary"),
    Case("7", "stale-temporary-removed", "utils.remove_stale_temporaries", ".tmp", None,
         "tests/test_utils.py::test_killed_write_leaves_a_temporary_that_the_next_start_removes"),
    Case("7", "saver-removes-stale-temporary", "handlers.AtomicCheckpointSaver", ".tmp", None,
         "tests/test_handlers_checkpoint.py::test_interval_saves_and_stale_temporary_removed"),
    # 8 -- geometry is never guessed
    Case("8", "ct-preset-48-slices", "transforms.get_preset('ct'/'mr')", "scan48.nii.gz", "InvalidImageError",
         _PRESET),
    Case("8", "ct-preset-array-volume", "transforms.get_preset('ct')", "item 'image'", "InvalidImageError",
         _GEO + "test_preset_refusal_names_the_key_of_an_array_and_other_ranks"),
    Case("8", "ct-preset-one-slice-dicom", "transforms.get_preset('ct')", "write_dicom_series(vol[:, :, 3:4]", None,
         _GEO + "test_a_single_ct_dicom_file_is_a_2d_slice_not_a_cube"),
    Case("8", "equal-series-any-order", "io.DicomSeriesReader", "1.2.3.4.200, 1.2.3.4.300", "SeriesGeometryError",
         _GEO + "test_interleaved_series_of_equal_size_give_the_same_answer_in_any_listing_order"),
    Case("8", "loadimaged-equal-series", "LoadImaged(reader='DicomSeriesReader')", "_tied", "SeriesGeometryError",
         _NO_ITK),
    Case("8", "loadimaged-duplicate-positions", "LoadImaged(reader='DicomSeriesReader')", "_duplicate_positions",
         "SeriesGeometryError", _NO_ITK),
    Case("8", "loadimaged-mixed-slice-sizes", "LoadImaged(reader='DicomSeriesReader')", "_mixed_sizes",
         "SeriesGeometryError", _NO_ITK),
    Case("8", "loadimaged-files-of-two-series", "LoadImaged(reader='DicomSeriesReader')", "_files_of_two_series",
         "SeriesGeometryError", _NO_ITK),
    Case("8", "loadimage-instance-no-itk", "LoadImage(reader=DicomSeriesReader())", "1.2.3.4.300",
         "SeriesGeometryError",
         "tests/test_io_dicom_series.py::test_load_image_with_this_reader_never_falls_back_to_itk_on_a_refused_series"),
    # 9 -- configs are code: say so, and refuse what is not plain data or a registered network
    Case("9", "dac-network-unregistered", "dac.config.check_network", "collections.OrderedDict", "ConfigError",
         _CLI + "test_dac_network_must_be_registered_unless_allowed"),
    Case("9", "dac-config-dollar-expression", "dac.config.DACConfig", "data.intensity", "ConfigError",
         _CLI + "test_dac_config_is_plain_data"),
    Case("9", "dac-config-target", "dac.config.DACConfig", "network.kwargs.backbone._target_", "ConfigError",
         _CLI + "test_dac_config_is_plain_data"),
    Case("9", "dac-config-bad-choice", "dac.config.DACConfig", "data.on_error", "ConfigError",
         _CLI + "test_dac_config_is_plain_data"),
    Case("9", "help-says-configs-are-code", "medfound dac train --help", "run only configs you wrote", None,
         _CLI + "test_help_says_configs_are_code"),
    Case("9", "readme-torch-load-weights-only", "README.md", "weights_only=True", None,
         "tests/test_bad_input_summary.py::test_readme_loads_weights_only"),
    # also -- user-facing
    Case("also", "nvimgcodec-notice-filtered", "medfound.io import", "nvImageCodec", None,
         "tests/test_io_registry.py::test_nvimgcodec_notice_is_silenced_and_nothing_else"),
    Case("also", "nvimgcodec-not-in-run-output", "medfound dac train / medfound pretrain", "nvImageCodec", None,
         _FAULT + "test_two_runs_without_a_seed_are_identical"),
    Case("also", "pretrain-tensorboard-missing", "medfound pretrain", "tensorboard", "ConfigError",
         _MISSING + "test_pretrain_option_without_its_package_is_one_line"),
    Case("also", "pretrain-tqdm-missing", "medfound pretrain", "tqdm", "ConfigError",
         _MISSING + "test_pretrain_option_without_its_package_is_one_line"),
    Case("also", "dac-tensorboard-missing", "medfound dac train", "tensorboard", "ConfigError",
         _MISSING + "test_dac_option_without_its_package_is_one_line"),
    Case("also", "dac-tqdm-missing", "medfound dac train", "tqdm", "ConfigError",
         _MISSING + "test_dac_option_without_its_package_is_one_line"),
    Case("also", "progress-bars-with-eta", "medfound pretrain / dac train", "ProgressBar", None,
         "tests/test_bad_input_summary.py::test_long_runs_show_a_progress_bar_by_default"),
    Case("also", "transfer-runs-with-eta", "medfound transfer", "ETA", None,
         "tests/test_bad_input_summary.py::test_transfer_logs_each_run_with_its_progress_and_eta"),
    Case("also", "dac-evaluate-saved-config", "medfound dac evaluate", "config.json", None,
         _CLI + "test_evaluate_uses_the_run_as_it_was_trained"),
    Case("also", "set-keeps-config-path", "medfound dac train --set", "--set", None,
         _CLI + "test_set_can_repeat_and_leaves_the_config_path_alone"),
    Case("also", "peak-rss-under-1gib", "every crafted file (subprocess, RLIMIT_AS 2 GiB)", "PEAK_RSS", None,
         _HOST + "test_peak_memory_stays_under_one_gib"),
)


def table_cases() -> list[Case]:
    """The cases the tests keep in their own parameter tables (imported from them: one list each)."""
    from test_multitask_cli import BAD_COMMANDS, BAD_PRETRAIN

    out = []
    for i, (_, message) in enumerate(BAD_PRETRAIN):
        out.append(Case("5", f"pretrain-config-{i}:{message.split(' ')[0]}", "medfound pretrain",
                        message.split(" ")[0], "ConfigError",
                        "tests/test_multitask_cli.py::test_bad_pretrain_values_are_one_line_naming_the_key"))
    for i, (argv, message) in enumerate(BAD_COMMANDS):
        # a malformed --network is a raw-traceback case (5); the rest were values silently dropped (6)
        defect = "5" if "--network" in argv else "6"
        out.append(Case(defect, f"{argv[0]}-command-{i}:{message.split(' ')[0]}", f"medfound {argv[0]}",
                        message.split(" ")[0], "ConfigError",
                        "tests/test_multitask_cli.py::test_bad_command_values_are_rejected_not_dropped"))
    return out


def all_cases() -> list[Case]:
    """:data:`CASES` and :func:`table_cases`."""
    return [*CASES, *table_cases()]


def hostile_case_ids() -> set[str]:
    """The case names the hostile-file worker must run (defect 4, the crafted-file sweep)."""
    return {c.id for c in CASES if c.test == _SWEEP}
