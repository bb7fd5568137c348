"""Every registered pipeline compiles, and its IR carries what the cluster needs."""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass

import pytest
import yaml

from cnnvsmlp.config import load_config
from cnnvsmlp.errors import UserError
from cnnvsmlp_pipelines import PIPELINES, compile_pipeline, get_pipeline
from cnnvsmlp_pipelines.images import image_ref
from cnnvsmlp_pipelines.settings import cluster_settings


@dataclass(frozen=True)
class NodeType:
    """A GKE machine type and what GKE leaves allocatable to pods on it, rounded down."""

    machine_type: str
    cpu: float
    memory_gib: float
    gpus: int = 0


NODE_TYPES = {
    # The default pool of the cluster: KFP itself and every CPU task.
    "cpu": NodeType("e2-standard-4", cpu=3.92, memory_gib=13.0),
    # The spot GPU pool of manifests/gcp/nodepool.yaml: training.
    "gpu": NodeType("g2-standard-8", cpu=7.91, memory_gib=28.0, gpus=1),
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    return {
        name: list(yaml.safe_load_all(compile_pipeline(name, out).read_text()))
        for name in PIPELINES
    }


def _loop(ir: dict) -> tuple[str, dict]:
    loops = [(n, t) for n, t in ir["root"]["dag"]["tasks"].items() if "parameterIterator" in t]
    assert len(loops) == 1, "one fan-out"
    return loops[0]


def test_every_pipeline_compiles(compiled):
    assert "compare" in compiled
    for name, docs in compiled.items():
        assert docs[0]["pipelineInfo"]["name"] == name


def test_every_pipeline_names_its_comparison_and_check_tasks_as_its_ir_has_them(compiled):
    for name, docs in compiled.items():
        spec, tasks = get_pipeline(name), docs[0]["root"]["dag"]["tasks"]
        assert spec.name == name
        assert spec.comparison_task in tasks and spec.check_task in tasks
        checked = tasks[spec.check_task]["inputs"]["artifacts"]["comparison"]
        assert checked["taskOutputArtifact"]["producerTask"] == spec.comparison_task
        assert all(step in tasks for step in spec.slow_steps)
        assert callable(spec.failure_summary)


def test_every_comparison_names_the_kfp_job_a_cluster_run_stamped_no_run_id_for(compiled):
    for name, docs in compiled.items():
        spec, tasks = get_pipeline(name), docs[0]["root"]["dag"]["tasks"]
        job_id = tasks[spec.comparison_task]["inputs"]["parameters"]["job_id"]
        assert job_id["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}", name


def test_compare_fans_out_and_in(compiled):
    ir = compiled["compare"][0]
    name, loop = _loop(ir)
    assert loop["parameterIterator"]["items"]["inputParameter"].startswith(
        "pipelinechannel--plan-runs"
    )
    inner = ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"train-model", "evaluate-model"}
    results = ir["root"]["dag"]["tasks"]["compare-runs"]["inputs"]["artifacts"]["results"]
    assert results["taskOutputArtifact"]["producerTask"] == name
    assert ir["components"]["comp-compare-runs"]["inputDefinitions"]["artifacts"]["results"][
        "isArtifactList"
    ]


def test_train_runs_on_one_gpu_of_the_gpu_pool_with_retries(compiled):
    ir, platform = compiled["compare"]
    settings = cluster_settings()
    _, loop = _loop(ir)
    train = ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]["train-model"]
    assert train["retryPolicy"]["maxRetryCount"] == 3
    assert train["retryPolicy"]["backoffDuration"] == "60s"
    # Argo's backoff.maxDuration is one window from the first attempt: longer than a training
    assert train["retryPolicy"]["backoffMaxDuration"] == "86400s"
    assert not train.get("cachingOptions", {}).get("enableCache", False)
    resources = ir["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == settings.gpu_resource
    assert resources["accelerator"]["resourceCount"] == "1"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]
    assert k8s["nodeSelector"]["labels"] == {
        settings.gpu_node_selector_key: settings.gpu_node_selector_value
    }
    assert k8s["tolerations"] == [
        {"effect": "NoSchedule", "key": settings.gpu_toleration_key, "operator": "Exists"}
    ]


def test_every_task_requests_cpu_and_memory_and_data_is_cached(compiled):
    ir = compiled["compare"][0]
    for executor in ir["deploymentSpec"]["executors"].values():
        resources = executor["container"]["resources"]
        assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"]
    assert ir["root"]["dag"]["tasks"]["prepare-data"]["cachingOptions"]["enableCache"] is True
    gpu_only = [
        n
        for n, e in ir["deploymentSpec"]["executors"].items()
        if "accelerator" in e["container"]["resources"]
    ]
    assert gpu_only == ["exec-train-model"]


def test_images_are_the_project_images(compiled):
    ir = compiled["compare"][0]
    images = {n: e["container"]["image"] for n, e in ir["deploymentSpec"]["executors"].items()}
    assert images.pop("exec-train-model") == image_ref("gpu")
    assert set(images.values()) == {image_ref("cpu")}
    assert all(not i.endswith(":latest") for i in images.values())


def test_default_parameter_is_the_fashion_preset(compiled):
    ir = compiled["compare"][0]
    default = ir["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
    expected = json.loads(load_config("fashion-mnist").model_dump_json())
    expected["resume_uri"] = f"gs://{cluster_settings().bucket}/resume"  # a cluster run's default
    assert json.loads(default) == expected
    # 0: the config's repeats
    assert ir["root"]["inputDefinitions"]["parameters"]["repeats"]["defaultValue"] == 0
    args = get_pipeline("compare").arguments(load_config("emnist-letters", ["repeats=3"]))
    assert json.loads(args["config_json"])["repeats"] == 3 and args["repeats"] == 3


def test_repeats_parameter_replaces_the_configs(tmp_path):
    from kfp import dsl

    from cnnvsmlp.config import ConfigError, read_config
    from cnnvsmlp_components import plan_runs

    config = load_config("emnist-letters", ["seed=7"]).model_dump_json()
    settled = dsl.Artifact(uri=str(tmp_path / "config"))
    plan = functools.partial(plan_runs.python_func, config=settled)
    runs = [json.loads(r) for r in plan(config_json=config, repeats=3)]
    assert read_config(tmp_path / "config").repeats == 3  # what every later task gets
    assert sorted((r["variant"], r["repeat"], r["seed"]) for r in runs) == [
        (v, r, 7 + r) for v in ("cnn-deep", "mlp") for r in range(3)
    ]
    # The loop's items in the order the runs start, the order failures are named by.
    settled_runs = read_config(tmp_path / "config").scheduled_runs()
    assert [r["variant"] for r in runs] == ["mlp"] * 3 + ["cnn-deep"] * 3
    assert runs == [json.loads(r.model_dump_json()) for r in settled_runs]
    kept = plan(config_json=config, repeats=0)  # the config's: 1
    assert [json.loads(r)["repeat"] for r in kept] == [0, 0]
    with pytest.raises(ConfigError, match="parameters: repeats: Input should be greater than"):
        plan(config_json=config, repeats=-1)


def test_unknown_pipeline_lists_the_registered_ones():

    with pytest.raises(UserError, match="unknown pipeline 'nope'; registered: compare"):
        get_pipeline("nope")


def test_compiling_an_unknown_pipeline_writes_nothing(tmp_path):
    from cnnvsmlp_pipelines import compile_pipeline

    with pytest.raises(UserError, match="unknown pipeline 'nope'"):
        compile_pipeline("nope", tmp_path / "build")
    assert not (tmp_path / "build").exists()


UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "": 1}


def _bytes(quantity: str) -> float:
    number = quantity.rstrip("KiMGTk")
    return float(number) * UNITS[quantity[len(number) :]]


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def placement_problems(ir: dict, platform: dict) -> list[str]:
    """Tasks whose requests do not fit the allocatable resources of the node they land on."""
    settings = cluster_settings()
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    problems = []
    for name, executor in ir["deploymentSpec"]["executors"].items():
        resources = executor["container"]["resources"]
        selector = k8s.get(name, {}).get("nodeSelector", {}).get("labels", {})
        on_gpu_pool = selector.get(settings.gpu_node_selector_key) == (
            settings.gpu_node_selector_value
        )
        node = NODE_TYPES["gpu" if on_gpu_pool else "cpu"]
        cpu = _cpu(resources.get("resourceCpuLimit") or resources["resourceCpuRequest"])
        memory = _bytes(resources.get("resourceMemoryLimit") or resources["resourceMemoryRequest"])
        gpus = int(resources.get("accelerator", {}).get("resourceCount", 0))
        if cpu > node.cpu:
            problems.append(f"{name}: {cpu} CPU > {node.cpu} allocatable on {node.machine_type}")
        if memory > node.memory_gib * 2**30:
            problems.append(
                f"{name}: {memory / 2**30:.2f} GiB > {node.memory_gib} GiB allocatable on "
                f"{node.machine_type}"
            )
        if gpus > node.gpus:
            problems.append(f"{name}: {gpus} GPU > {node.gpus} on {node.machine_type}")
    return problems


def test_every_task_fits_the_node_it_lands_on(compiled):
    ir, platform = compiled["compare"]
    assert placement_problems(ir, platform) == []
    # a request raised above the node's allocatable fails here, not as a Pending pod
    raised = yaml.safe_load(yaml.safe_dump(ir))
    executors = raised["deploymentSpec"]["executors"]
    executors["exec-evaluate-model"]["container"]["resources"]["resourceMemoryRequest"] = "14Gi"
    executors["exec-train-model"]["container"]["resources"]["resourceCpuRequest"] = "8"
    assert placement_problems(raised, platform) == [
        "exec-evaluate-model: 14.00 GiB > 13.0 GiB allocatable on e2-standard-4",
        "exec-train-model: 8.0 CPU > 7.91 allocatable on g2-standard-8",
    ]
    # a GPU task that lost its node selector would land on the CPU pool, which has no GPU
    moved = yaml.safe_load(yaml.safe_dump(platform))
    del moved["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"][
        "nodeSelector"
    ]
    assert "exec-train-model: 1 GPU > 0 on e2-standard-4" in placement_problems(ir, moved)


def test_the_node_types_are_the_ones_the_guides_create():
    from cnnvsmlp_pipelines.settings import ROOT

    pool = yaml.safe_load((ROOT / "manifests" / "gcp" / "nodepool.yaml").read_text())
    assert pool["spec"]["nodeConfig"]["machineType"] == NODE_TYPES["gpu"].machine_type
    assert pool["spec"]["nodeConfig"]["guestAccelerator"][0]["count"] == NODE_TYPES["gpu"].gpus
    for guide in ("README.md", "docs/cluster.md"):
        text = (ROOT / guide).read_text()
        assert f"--machine-type {NODE_TYPES['cpu'].machine_type}" in text, guide
        assert "--machine-type" in text and text.count("--machine-type") == 1, guide


def test_every_task_runs_as_the_images_non_root_user(compiled):
    from cnnvsmlp_pipelines.placement import IMAGE_UID
    from cnnvsmlp_pipelines.settings import ROOT

    for name, (ir, platform) in compiled.items():
        executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert set(executors) == set(ir["deploymentSpec"]["executors"]), name
        for executor, config in executors.items():
            context = config["securityContext"]
            assert context == {"runAsUser": str(IMAGE_UID), "runAsNonRoot": True} or context == {
                "runAsUser": IMAGE_UID,
                "runAsNonRoot": True,
            }, (name, executor)
    for dockerfile in ("cpu.Dockerfile", "gpu.Dockerfile"):
        assert f"USER {IMAGE_UID}" in (ROOT / "images" / dockerfile).read_text()


def test_the_retry_of_a_run_is_named_as_kfp_217_has_it():
    import kfp
    import kfp_server_api

    from cnnvsmlp_pipelines import placement

    assert hasattr(kfp_server_api.RunServiceApi, "run_service_retry_run")
    assert not hasattr(kfp.Client, "retry_run")
    assert "runs.retry_run" not in placement.__doc__
    assert "run_service_retry_run" in placement.__doc__ and ":retry" in placement.__doc__


def test_data_efficiency_fans_out_on_the_gpu_pool_and_in(compiled):
    ir, platform = compiled["data-efficiency"]
    settings = cluster_settings()
    name, loop = _loop(ir)
    assert loop["parameterIterator"]["items"]["inputParameter"].startswith(
        "pipelinechannel--plan-efficiency-runs"
    )
    inner = ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"train-model", "evaluate-model"}
    # the loop's tasks read the plan's outputs as artifacts (kfp 2.17's local-runner bug)
    train_inputs = inner["train-model"]["inputs"]
    assert set(train_inputs["artifacts"]) == {"config", "dataset"}
    assert set(train_inputs["parameters"]) == {"run_json", "job_id"}
    results = ir["root"]["dag"]["tasks"]["compare-efficiency"]["inputs"]["artifacts"]["results"]
    assert results["taskOutputArtifact"]["producerTask"] == name
    assert ir["components"]["comp-compare-efficiency"]["inputDefinitions"]["artifacts"]["results"][
        "isArtifactList"
    ]
    check = ir["root"]["dag"]["tasks"]["check-efficiency"]
    assert check["dependentTasks"] == ["compare-efficiency"]

    train = inner["train-model"]
    assert train["retryPolicy"]["maxRetryCount"] == 3
    assert train["retryPolicy"]["backoffDuration"] == "60s"
    assert train["retryPolicy"]["backoffMaxDuration"] == "86400s"
    resources = ir["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == settings.gpu_resource
    assert resources["accelerator"]["resourceCount"] == "1"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]
    assert k8s["nodeSelector"]["labels"] == {
        settings.gpu_node_selector_key: settings.gpu_node_selector_value
    }
    assert k8s["tolerations"] == [
        {"effect": "NoSchedule", "key": settings.gpu_toleration_key, "operator": "Exists"}
    ]
    assert placement_problems(ir, platform) == []


def test_data_efficiency_caches_only_the_data_and_uses_the_project_images(compiled):
    ir = compiled["data-efficiency"][0]
    root = ir["root"]["dag"]["tasks"]
    _, loop = _loop(ir)
    inner = ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert root["prepare-data"]["cachingOptions"]["enableCache"] is True
    for task in (*(t for n, t in root.items() if n != "prepare-data"), *inner.values()):
        assert not task.get("cachingOptions", {}).get("enableCache", False)
    executors = ir["deploymentSpec"]["executors"]
    for executor in executors.values():
        resources = executor["container"]["resources"]
        assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"]
    gpu_only = [n for n, e in executors.items() if "accelerator" in e["container"]["resources"]]
    assert gpu_only == ["exec-train-model"]
    images = {n: e["container"]["image"] for n, e in executors.items()}
    assert images.pop("exec-train-model") == image_ref("gpu")
    assert set(images.values()) == {image_ref("cpu")}


def test_data_efficiency_defaults_are_its_preset_and_sizes(compiled):
    from cnnvsmlp.efficiency.curves import effective_sizes

    params = compiled["data-efficiency"][0]["root"]["inputDefinitions"]["parameters"]
    config = json.loads(params["config_json"]["defaultValue"])
    expected = json.loads(load_config("fashion-mnist-data-efficiency").model_dump_json())
    expected["resume_uri"] = f"gs://{cluster_settings().bucket}/resume"
    assert config == expected
    assert (config["variants"], config["repeats"]) == (["mlp", "cnn"], 3)
    study = json.loads(params["efficiency_json"]["defaultValue"])
    assert study["sizes"] is None  # the halvings of whatever training split the data has
    assert effective_sizes(None, 48_000, 10) == [375, 750, 1500, 3000, 6000, 12000, 24000, 48000]
    assert params["repeats"]["defaultValue"] == 0
    args = get_pipeline("data-efficiency").arguments(load_config("fashion-mnist", ["repeats=2"]))
    assert args["repeats"] == 2 and json.loads(args["efficiency_json"]) == study


def test_data_efficiency_plan_settles_sizes_to_the_data(small_fashion, tmp_path):
    from kfp import dsl

    from cnnvsmlp.config import RunSpec, read_config
    from cnnvsmlp.efficiency.curves import EfficiencyConfig
    from cnnvsmlp_components import plan_efficiency_runs

    config = load_config("fashion-mnist-data-efficiency").model_dump_json()
    settled = dsl.Artifact(uri=str(tmp_path / "config"))
    study = dsl.Artifact(uri=str(tmp_path / "efficiency"))
    runs = plan_efficiency_runs.python_func(
        config_json=config,
        efficiency_json=EfficiencyConfig().model_dump_json(),
        repeats=2,
        dataset=dsl.Dataset(uri=str(small_fashion)),
        config=settled,
        efficiency=study,
    )
    runs = [RunSpec.model_validate_json(r) for r in runs]
    # the small data set has 960 training images: its halvings of 3 images a class or more
    sizes = [30, 60, 120, 240, 480, 960]
    assert EfficiencyConfig.read(tmp_path / "efficiency").sizes == sizes
    assert read_config(tmp_path / "config").repeats == 2
    assert sorted((r.variant, r.n_train, r.repeat) for r in runs) == sorted(
        (v, n, r) for v in ("mlp", "cnn") for n in sizes for r in range(2)
    )


def test_a_user_model_and_folder_reach_every_task_in_the_config(tmp_path, monkeypatch):
    from kfp import dsl

    from cnnvsmlp import models
    from cnnvsmlp.config import read_config
    from cnnvsmlp_components import plan_runs

    monkeypatch.chdir(tmp_path)
    source = "import keras\n\n\ndef net(input_shape, num_classes):\n    return None\n\n\n"
    (tmp_path / "cluster_models.py").write_text(source + "net.family = 'cnn'\n")
    overrides = ["variants=mlp,cluster_models:net", "dataset=folder:gs://bucket/images"]
    args = get_pipeline("compare").arguments(load_config("fashion-mnist", overrides))
    (tmp_path / "cluster_models.py").unlink()  # a task's machine has no copy of the file
    models._SOURCES.clear()
    sys.modules.pop("cluster_models", None)
    settled = dsl.Artifact(uri=str(tmp_path / "config"))
    runs = plan_runs.python_func(config_json=args["config_json"], repeats=0, config=settled)
    config = read_config(tmp_path / "config")  # what train_model and compare_runs read
    assert config.model_sources == {"cluster_models": source + "net.family = 'cnn'\n"}
    assert config.dataset == "folder:gs://bucket/images"
    assert sorted(json.loads(r)["variant"] for r in runs) == ["cluster_models:net", "mlp"]
    assert models.get_variant("cluster_models:net").family == "cnn"
