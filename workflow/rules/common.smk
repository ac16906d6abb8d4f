# Shared helpers: config validation, result paths, and how steps call r3lm.

import json
import shlex
import sys
import zlib
from pathlib import Path

# Rules and this file use the r3lm package of this checkout (a conda env needs only the dependencies).
sys.path.insert(0, workflow.basedir)
# (snakemake formats the prefix too, hence the doubled braces)
shell.prefix(
    'set -euo pipefail; export PYTHONPATH="'
    + workflow.basedir
    + '${{PYTHONPATH:+:$PYTHONPATH}}"; '
)

from r3lm.cli.workflow import step_sections
from r3lm.config import validate_config
from r3lm.data.gosai import CELL_TYPES as GOSAI_CELL_TYPES
from r3lm.data.prepare import OUTPUT_TABLES
from r3lm.data.simulate import load_catalogue
from r3lm.data.splits import SPLITS
from r3lm.errors import InputError
from r3lm.evaluate.transfer import check_entries as check_transfer_entries
from r3lm.evaluate.transfer import transfer_entry as find_transfer_entry
from r3lm.reasoning.teacher import STAGE2_SETS, TEACHER_SETS, set_tables
from r3lm.stage1.models import SHARED as SHARED_STAGE1
from r3lm.stage2.inputs import DEPLOYABLE_MODES as DEPLOYABLE_INPUT_MODES
from r3lm.stage2.inputs import MODES as STAGE2_INPUT_MODES

# workflow/schemas/config.schema.yaml fills every default; an invalid key or value stops the
# workflow here with one line naming the key.
config.update(validate_config(config, source="config"))

DATASET = config["dataset"]
RESULTS = f"results/{DATASET['name']}"
DATA_DIR = f"{RESULTS}/data"
LOG_DIR = f"{RESULTS}/logs"
TABLES = list(OUTPUT_TABLES)
SCAN_TABLES = list(SPLITS)  # test_subset is part of test

# Outputs depend on the settings that make them, so ablations never overwrite each other.
MOTIFS = config["motifs"]
MOTIF_SETTING = (
    f"{MOTIFS['jaspar_release']}_{MOTIFS['collection']}_{MOTIFS['tax_group']}"
    f"_p{MOTIFS['pvalue']:g}_{MOTIFS['background']}_pc{MOTIFS['pseudocount']:g}"
)
MOTIF_DIR = f"{RESULTS}/motifs/{MOTIF_SETTING}"
MOTIF_FILE = (
    f"resources/motifs/{MOTIFS['jaspar_release']}_{MOTIFS['collection']}_{MOTIFS['tax_group']}.meme"
)
RCC_DIR = (
    f"{RESULTS}/rcc/{MOTIF_SETTING}_"
    + ("grammar" if config["rcc"]["grammar_tags"] else "nogrammar")
)
SHARDS = [f"{shard:04d}" for shard in range(MOTIFS["shards"])]
ENV = "../../envs/r3lm.yaml"


def settings(step, without=()):
    """The config sections `step` reads (declared with its command, r3lm/cli/workflow.py), as JSON: changing
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
EMBEDDED_MODEL = "smollm2-135m-instruct"
TEACHER = config["reasoning"]["teacher"]


def slug(name):
    """A model id or folder as one path component: Qwen/Qwen3-4B -> Qwen3-4B."""
    return Path(name.rstrip("/")).name


def teacher_name():
    if TEACHER == "openai":
        return f"openai-{slug(config['reasoning']['openai']['model'])}"
    if TEACHER == "hf":
        return f"hf-{slug(config['reasoning']['hf']['model'] or LLM['base'])}"
    if TEACHER == "released":
        return f"released-{slug(config['reasoning']['released']['source'])}"
    return f"{TEACHER}-{config['reasoning']['detail']}"


REASONING_DIR = f"{RESULTS}/reasoning/{Path(RCC_DIR).name}_{teacher_name()}" + (
    "_tagged" if config["rcc"]["evidence_tags"] else ""
)
# With rcc.evidence_tags the LLMs read cards whose text carries each motif's direction from the train split's
# evidence: the same tables, re-rendered beside the evidence; the card JSON is the same either way.
EVIDENCE_TAGS = config["rcc"]["evidence_tags"]
if EVIDENCE_TAGS and TEACHER == "released":
    raise InputError("rcc.evidence_tags needs the train split's evidence, which the released teacher sets do not "
                     "use; turn one of them off", path="config")
EVIDENCE_TAG_FILE = f"{REASONING_DIR}/evidence_tags.json"
TEXT_CARD_DIR = f"{REASONING_DIR}/cards" if EVIDENCE_TAGS else RCC_DIR
# The card table each teacher set draws from, and the paper protocol's test rows: r3lm's seeded test subset, or
# with the released data its test file's records (the released test set, drawn from the whole test split).
SET_TABLES = set_tables(TEACHER)
PAPER_TEST = (
    f"{REASONING_DIR}/test.parquet" if TEACHER == "released" else f"{DATA_DIR}/test_subset.parquet"
)


def evidence_tag_input(wildcards):
    return {"evidence_tags": EVIDENCE_TAG_FILE} if EVIDENCE_TAGS else {}


def evidence_tag_argument(wildcards, input):
    return f"--evidence-tags {input.evidence_tags}" if "evidence_tags" in input.keys() else ""

# Stage I: one shared model, or one per cell type (the official setting), trained here or given as
# pretrained models (which skip training). Each model writes its own cell types' rationales in its own job.
STAGE1 = config["stage1"]
PRETRAINED = STAGE1["pretrained"]
PER_CELL_TYPE_STAGE1 = STAGE1["models"] == "per_cell_type" or PRETRAINED is not None


def planned_cell_types():
    """The cell types, known before any data is read, so that each gets its own Stage-I jobs."""
    if DATASET["cell_types"]:
        return list(DATASET["cell_types"])
    if DATASET["source"] == "gosai2024":
        return list(GOSAI_CELL_TYPES)
    if DATASET["source"] == "demo":
        return list(load_catalogue().cell_types)
    raise InputError(
        "per-cell-type Stage I (stage1.models or stage1.pretrained) needs dataset.cell_types for a table source",
        path="config",
    )


def stage1_groups():
    if not PER_CELL_TYPE_STAGE1:
        return [SHARED_STAGE1]
    cells = planned_cell_types()
    missing = [cell for cell in cells if PRETRAINED is not None and cell not in PRETRAINED]
    if missing:
        raise InputError(f"stage1.pretrained has no model for {', '.join(missing)}", path="config")
    return cells


STAGE1_GROUPS = stage1_groups()
if PRETRAINED:  # named by a checksum of the models given, so another set of models gets its own folder
    PRETRAINED_ID = zlib.crc32(json.dumps(PRETRAINED, sort_keys=True).encode())
    STAGE1_DIR = f"{RESULTS}/stage1/{Path(REASONING_DIR).name}_pretrained-{PRETRAINED_ID:08x}"
else:
    STAGE1_DIR = (
        f"{RESULTS}/stage1/{Path(REASONING_DIR).name}_{slug(LLM['base'])}_{STAGE1['method']}"
        + ("_per-cell-type" if PER_CELL_TYPE_STAGE1 else "")
    )


def stage1_model(group):
    return PRETRAINED[group] if PRETRAINED else f"{STAGE1_DIR}/{group}/model"


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


def base_model():
    """The embedded model's prepared folder, or the user's hub id / folder as given."""
    if LLM["base"] == EMBEDDED_MODEL:
        return f"{LLM['models_dir']}/{EMBEDDED_MODEL}"
    return LLM["base"]


def base_model_input(wildcards):
    """Only the embedded model is made by the workflow; hub ids are fetched by transformers."""
    return {"base": base_model()} if LLM["base"] == EMBEDDED_MODEL else {}


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
STAGE2_DIR = (
    f"{RESULTS}/stage2/{Path(STAGE1_DIR).name}_{STAGE2['backbone']}-backbone_{STAGE2['training']}"
)
BASELINES = config["baselines"]["methods"]
METHODS = BASELINES + STAGE2_MODES
CNN_DIR = f"{RESULTS}/baselines/cnn"  # the CNN reads sequences only: one model serves every run
RIDGE_DIR = f"{RESULTS}/baselines/motif_ridge/{Path(RCC_DIR).name}"
RUN_DIR = f"{RESULTS}/runs/{config['run']}"
EVAL_DIR = f"{RUN_DIR}/eval"
REPORT_DIR = f"{RUN_DIR}/report"
MODELS_DIR = f"{RUN_DIR}/models"
RUN_LOG_DIR = f"{LOG_DIR}/runs/{config['run']}"
# the run's modes that a bundle can serve (not oracle_cot, which reads the measured level)
DEPLOYABLE_MODES = [mode for mode in STAGE2_MODES if mode in DEPLOYABLE_INPUT_MODES]
EVALUATION = config["evaluation"]
DISRUPTION = EVALUATION["disruption"]
# The simulator knows which planted sites cause activity, so only the demo can score citations.
CITATION_TRUTH = f"{DATA_DIR}/ground_truth.parquet" if DATASET["source"] == "demo" else None


def stage2_backbone():
    if STAGE2["backbone"] != "stage1":
        return base_model()
    if PER_CELL_TYPE_STAGE1:
        raise InputError(
            "stage2.backbone: stage1 needs one shared Stage-I model; with a Stage-I model per cell type use "
            "stage2.backbone: base (the official setting)",
            path="config",
        )
    return stage1_model(SHARED_STAGE1)


def stage2_backbone_input(wildcards):
    if STAGE2["backbone"] == "stage1":
        return {"backbone": stage1_model_inputs()}
    return base_model_input(wildcards)


def stage2_rationales(wildcards):
    """Only the reasoning-conditioned method reads the Stage-I model's own rationales."""
    if wildcards.mode != "generated_cot":
        return []
    return [f"{STAGE1_DIR}/rationales/{name}.parquet" for name in STAGE2_SETS]


def prediction_dir(method):
    if method == "cnn":
        return f"{CNN_DIR}/predictions"
    if method == "motif_ridge":
        return f"{RIDGE_DIR}/predictions"
    return f"{STAGE2_DIR}/{method}/predictions"


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
    return [f"{MODELS_DIR}/{name}" for name in DEPLOYABLE_MODES + BASELINES]


# Transfer: every bundle of the run scored on other tables (evaluation.transfer), one job per entry.
TRANSFER = EVALUATION["transfer"]
NOT_TRANSFER = ("evaluation.transfer",)  # the other evaluation steps do not read it: adding an entry reruns none


def served_cell_types():
    """The cell types the run's models serve, known before any data is read: dataset.cell_types, the
    source's own, or a table's activity columns."""
    if DATASET["source"] == "table" and not DATASET["cell_types"]:
        return list(DATASET["table"]["activity_columns"])
    return planned_cell_types()


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


if TRANSFER:  # a cell type only the other table has, or a run with nothing to score, stops the planning
    check_transfer_entries(TRANSFER, served_cell_types())
    if not model_bundles():
        raise InputError(
            "evaluation.transfer scores the run's bundles, but it packages none (stage2.modes and "
            "baselines.methods name no deployable method)",
            path="config",
        )


def named(pairs):
    """NAME=PATH arguments, each quoted for the shell (headings have spaces)."""
    return " ".join(shlex.quote(f"{name}={path}") for name, path in pairs.items())
