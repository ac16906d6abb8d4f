# Shared helpers: the validated config, its result folders (r3lm/paths.py), and how rules call r3lm steps.

import json
import shlex
import sys
from pathlib import Path

# Rules and this file use the r3lm package of this checkout (a conda env needs only the dependencies).
sys.path.insert(0, workflow.basedir)
# (snakemake formats the prefix too, hence the doubled braces)
shell.prefix(
    'set -euo pipefail; export PYTHONPATH="'
    + workflow.basedir
    + '${{PYTHONPATH:+:$PYTHONPATH}}"; '
)

from r3lm.config import validate_config
from r3lm.data.prepare import OUTPUT_TABLES
from r3lm.evaluate.transfer import transfer_entry as find_transfer_entry
from r3lm.layout import SPLITS
from r3lm.llm.base import EMBEDDED_NAME
from r3lm.paths import SHARED_STAGE1, check_plan, deployable_methods
from r3lm.reasoning.teacher import STAGE2_SETS, TEACHER_SETS, set_tables
from r3lm.stage2.inputs import DEPLOYABLE_MODES as DEPLOYABLE_INPUT_MODES
from r3lm.stage2.inputs import MODES as STAGE2_INPUT_MODES
from r3lm.steps import step_sections

# workflow/schemas/config.schema.yaml fills every default; an invalid key or value stops the
# workflow here with one line naming the key, and so do settings that cannot work together.
config.update(validate_config(config, source="config"))
# Every result folder is named by the settings that make it (r3lm/paths.py), so ablations never overwrite
# each other.
PATHS = check_plan(config)

DATASET = config["dataset"]
RESULTS = PATHS.results
DATA_DIR = PATHS.data_dir
LOG_DIR = PATHS.log_dir
TABLES = list(OUTPUT_TABLES)
SCAN_TABLES = list(SPLITS)  # test_subset is part of test
MOTIFS = config["motifs"]
MOTIF_SETTING = PATHS.motif_setting
MOTIF_DIR = PATHS.motif_dir
MOTIF_FILE = PATHS.motif_file
RCC_DIR = PATHS.rcc_dir
SHARDS = [f"{shard:04d}" for shard in range(MOTIFS["shards"])]
ENV = "../../envs/r3lm.yaml"


def settings(step, without=()):
    """The config sections `step` reads (declared with its step, r3lm/steps/), as JSON: changing
    them reruns the step, and the step refuses a config without one. `without` drops dotted keys the step
    does not read (which modes or methods run), so changing them reruns nothing."""
    chosen = {section: config[section] for section in step_sections(step)}
    for dotted in without:
        section, key = dotted.split(".")
        chosen[section] = {name: value for name, value in chosen[section].items() if name != key}
    return json.dumps(chosen, sort_keys=True)


def dataset_tables():
    return [f"{DATA_DIR}/{table}.parquet" for table in TABLES] + [f"{DATA_DIR}/summary.json"]


def card_tables():
    return [f"{RCC_DIR}/{table}.parquet" for table in TABLES]


def gosai_table():
    return f"resources/gosai2024/{DATASET['gosai2024']['filename']}"


def source_files(wildcards):
    """What prepare_data reads: the downloaded table, the simulation, or the user's files."""
    if DATASET["source"] == "gosai2024":
        return {"source": gosai_table()}
    if DATASET["source"] == "demo":
        return {"source": f"{DATA_DIR}/simulated.parquet"}
    table = DATASET["table"]
    files = {"table": table["path"]}
    files.update({key: table[key] for key in ("test_path", "genome") if table[key]})
    return files


def source_argument(wildcards, input):
    return f"--input {input.source}" if "source" in input.keys() else ""


# The reasoning chain: teacher sets per split, the Stage-I model, its own rationales.
LLM = config["llm"]
TEACHER = config["reasoning"]["teacher"]
REASONING_DIR = PATHS.reasoning_dir
# With rcc.evidence_tags the LLMs read cards whose text carries each motif's direction from the train split's
# evidence: the same tables, re-rendered beside the evidence; the card JSON is the same either way.
EVIDENCE_TAGS = config["rcc"]["evidence_tags"]
EVIDENCE_TAG_FILE = PATHS.evidence_tag_file
TEXT_CARD_DIR = PATHS.text_card_dir
# The card table each teacher set draws from, and the paper protocol's test rows.
SET_TABLES = set_tables(TEACHER)
PAPER_TEST = PATHS.paper_test


def evidence_tag_input(wildcards):
    return {"evidence_tags": EVIDENCE_TAG_FILE} if EVIDENCE_TAGS else {}


def evidence_tag_argument(wildcards, input):
    return f"--evidence-tags {input.evidence_tags}" if "evidence_tags" in input.keys() else ""

# Stage I: one shared model, or one per cell type (the official setting), trained here or given as
# pretrained models (which skip training). Each model writes its own cell types' rationales in its own job.
STAGE1 = config["stage1"]
PRETRAINED = STAGE1["pretrained"]
PER_CELL_TYPE_STAGE1 = PATHS.per_cell_type_stage1
STAGE1_GROUPS = PATHS.stage1_groups
STAGE1_DIR = PATHS.stage1_dir
stage1_model = PATHS.stage1_model


def stage1_models_argument(groups=None):
    """The --model / --stage1-model argument (r3lm.stage1.models.Stage1Models reads it)."""
    groups = groups or STAGE1_GROUPS
    if groups == [SHARED_STAGE1]:
        return shlex.quote(stage1_model(SHARED_STAGE1))
    return named({group: stage1_model(group) for group in groups})


def stage1_model_inputs(groups=None):
    """The models a job loads that are files here (hub ids are fetched by the job itself)."""
    models = [stage1_model(group) for group in groups or STAGE1_GROUPS]
    return [model for model in models if not PRETRAINED or Path(model).expanduser().is_dir()]


def base_model_input(wildcards):
    """Only the embedded model is made by the workflow; hub ids are fetched by transformers."""
    return {"base": PATHS.base_model} if LLM["base"] == EMBEDDED_NAME else {}


def hf_teacher_input(wildcards):
    if TEACHER == "hf" and not config["reasoning"]["hf"]["model"]:
        return base_model_input(wildcards)
    return {}


def released_source_input(wildcards):
    """A local copy of the released files is an input; a hub id is fetched (or found in the cache) by the job."""
    source = config["reasoning"]["released"]["source"]
    return {"source": source} if Path(source).expanduser().is_dir() else {}


def teacher_outputs():
    return [f"{REASONING_DIR}/{name}.parquet" for name in TEACHER_SETS] + [
        f"{REASONING_DIR}/sharegpt/dataset_info.json"
    ]


def stage1_outputs():
    summaries = [] if PRETRAINED else [f"{STAGE1_DIR}/{group}/summary.json" for group in STAGE1_GROUPS]
    return summaries + [f"{STAGE1_DIR}/rationales/{name}.parquet" for name in STAGE2_SETS]


def launcher(gpus, data_parallel=False):
    """`python -m r3lm` holding the job's GPUs (r3lm --gpus hides the others and stops when torch cannot use
    them), or accelerate's data-parallel launcher for a job that spreads over several."""
    claim = f" --gpus {gpus}" if gpus else ""
    if data_parallel and gpus > 1:
        # a free port per job: two jobs on one node would otherwise both take accelerate's 29500
        port = "$(python -c 'import socket; s = socket.socket(); s.bind((\"\", 0)); print(s.getsockname()[1])')"
        return f"accelerate launch --multi_gpu --num_processes {gpus} --main_process_port {port} -m r3lm{claim}"
    return f"python -m r3lm{claim}"


# Stage II and the baselines write their predictions beside their models, in folders named by the
# settings that made them; a run (config `run`) evaluates them into results/<dataset>/runs/<run>/.
STAGE2 = config["stage2"]
STAGE2_MODES = STAGE2["modes"]
STAGE2_DIR = PATHS.stage2_dir
BASELINES = config["baselines"]["methods"]
METHODS = BASELINES + STAGE2_MODES
RUN_DIR = PATHS.run_dir
EVAL_DIR = f"{RUN_DIR}/eval"
REPORT_DIR = f"{RUN_DIR}/report"
MODELS_DIR = f"{RUN_DIR}/models"
RUN_LOG_DIR = PATHS.run_log_dir
# the run's modes that a bundle can serve (not oracle_cot, which reads the measured level)
DEPLOYABLE_MODES = [mode for mode in STAGE2_MODES if mode in DEPLOYABLE_INPUT_MODES]
EVALUATION = config["evaluation"]
DISRUPTION = EVALUATION["disruption"]
CITATION_TRUTH = PATHS.citation_truth
STAGE2_BACKBONE = PATHS.base_model if STAGE2["backbone"] != "stage1" else stage1_model(SHARED_STAGE1)


def stage2_backbone_input(wildcards):
    if STAGE2["backbone"] == "stage1":
        return {"backbone": stage1_model_inputs()}
    return base_model_input(wildcards)


def stage2_rationales(wildcards):
    """Only the reasoning-conditioned method reads the Stage-I model's own rationales."""
    if wildcards.mode != "generated_cot":
        return []
    return [f"{STAGE1_DIR}/rationales/{name}.parquet" for name in STAGE2_SETS]


prediction_dir = PATHS.prediction_dir


def prediction_dirs():
    """Each method's predictions folder, by method name."""
    return {method: prediction_dir(method) for method in METHODS}


def faithfulness_tables():
    """HEADING=TSV pairs for the report, and the files behind them."""
    tables = {}
    if CITATION_TRUTH:
        tables["Cited motifs against planted causal sites (self-generated rationales)"] = (
            f"{EVAL_DIR}/citation_generated.tsv"
        )
        tables["Cited motifs against planted causal sites (teacher rationales)"] = (
            f"{EVAL_DIR}/citation_teacher.tsv"
        )
    if DISRUPTION["enabled"]:
        tables["Motif disruption: does the prediction move the way the rationale claims?"] = (
            f"{EVAL_DIR}/disruption_summary.tsv"
        )
    return tables


def training_curves():
    curves = {}
    for group in [] if PRETRAINED else STAGE1_GROUPS:
        name = "Stage I" if group == SHARED_STAGE1 else f"Stage I {group}"
        curves[f"{name} (held-out loss)"] = f"{STAGE1_DIR}/{group}/loss.csv"
    if "cnn" in BASELINES:
        curves["CNN baseline"] = f"{prediction_dir('cnn')}/curve.csv"  # written with its predictions
    for mode in STAGE2_MODES:
        curves[f"Stage II {mode}"] = f"{STAGE2_DIR}/{mode}/curve.csv"
    return curves


def model_bundles():
    """The LLM bundles (package_model) and the baselines' fast bundles (package_baseline)."""
    return [f"{MODELS_DIR}/{name}" for name in deployable_methods(config)]


# Design (design.enabled): on the run's CNN bundle, judged against the natural sequences: the simulation's own on
# the demo (with their noiseless activity), the test split elsewhere.
DESIGN = config["design"]["enabled"]
DESIGN_DIR = f"{RUN_DIR}/design"
HELDOUT_ORACLE_DIR = PATHS.heldout_oracle_dir
NATURAL_SEQUENCES = (
    f"{DATA_DIR}/simulated.parquet" if DATASET["source"] == "demo" else f"{DATA_DIR}/test.parquet"
)


# the top designs are explained by the reasoning model when the run packages it
EXPLAIN_DESIGNS = DESIGN and config["design"]["explain_top"] > 0 and "generated_cot" in DEPLOYABLE_MODES


def design_summary():
    """What the report's design section reads: the summary (its folder holds the tables) and the explanations."""
    if not DESIGN:
        return []
    return [f"{DESIGN_DIR}/summary.json"] + ([f"{DESIGN_DIR}/explained.parquet"] if EXPLAIN_DESIGNS else [])


# Transfer: every bundle of the run scored on other tables (evaluation.transfer), one job per entry.
TRANSFER = EVALUATION["transfer"]
NOT_TRANSFER = ("evaluation.transfer",)  # the other evaluation steps do not read it: adding an entry reruns none


def transfer_inputs(wildcards):
    """The other table (and the genome its regions are cut from), so a new file reruns the job."""
    entry = find_transfer_entry(config, wildcards.transfer)
    return {key: entry[key] for key in ("path", "genome") if entry[key]}


def transfer_seen_tables():
    """The split tables the run's models learned from, for the leak guard: train and val, and test too when
    the CNN is cross-validated (its folds train on the rows of every split)."""
    splits = ["train", "val"]
    if "cnn" in BASELINES and config["baselines"]["cnn"]["cross_validation"]["folds"]:
        splits.append("test")
    return [f"{DATA_DIR}/{split}.parquet" for split in splits]


def transfer_settings(name):
    """What the transfer job reads, as a config: its entry, the bootstrap, the sampling seed and the dataset's
    policies for bad rows; another entry's change, or the disruption test's, reruns nothing."""
    chosen = {
        "evaluation": {
            "bootstrap": EVALUATION["bootstrap"],
            "transfer": [find_transfer_entry(config, name)],
        },
        "sampling": {"seed": config["sampling"]["seed"]},
        "dataset": {key: DATASET[key] for key in ("on_invalid_sequence", "on_duplicate_id")},
    }
    return json.dumps(chosen, sort_keys=True)


def transfer_metrics():
    """Each entry's metrics table, for the report (none without entries)."""
    return [f"{EVAL_DIR}/transfer/{entry['name']}/metrics.tsv" for entry in TRANSFER]


def named(pairs):
    """NAME=PATH arguments, each quoted for the shell (headings have spaces)."""
    return " ".join(shlex.quote(f"{name}={path}") for name, path in pairs.items())
