"""The cluster files: Ray cluster launcher config, container image, KubeRay manifests, IAM policy.

Nothing here starts a cluster or a container. Each file is parsed and checked with the tools
that will read it where they exist here: Ray's own config validator for ray_cluster.yaml,
Ray's KubeRay autoscaler translation for the RayJob's cluster, the real `stam-label run`
option parser for every command line the files and docs hold, bash's parser for the
CronJob's script, and, for the IAM policy, every S3 request the job's storage code makes
(against the local S3 server) evaluated against the policy.
"""
from __future__ import annotations

import ast
import copy
import json
import re
import shlex
import subprocess
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "infra" / "k8s"
DOCKERFILE = ROOT / "infra" / "Dockerfile"
POLICY = ROOT / "infra" / "iam-policy.json"
CLUSTER_YAML = ROOT / "ray_cluster.yaml"


# ---- helpers ---------------------------------------------------------------------------------
def k8s_docs() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def one(kind: str, name: str | None = None) -> dict:
    found = [d for _, d in k8s_docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def rayjob() -> dict:
    return one("RayJob")


def cluster_spec() -> dict:
    return rayjob()["spec"]["rayClusterSpec"]


def worker_group(name: str) -> dict:
    groups = {g["groupName"]: g for g in cluster_spec()["workerGroupSpecs"]}
    assert name in groups, f"no worker group {name!r} (have {sorted(groups)})"
    return groups[name]


def ray_start_resources(group: dict) -> dict:
    """rayStartParams.resources in KubeRay's syntax: a quoted JSON object with escaped quotes."""
    raw = group["rayStartParams"].get("resources")
    if raw is None:
        return {}
    assert raw.startswith('"') and raw.endswith('"'), f"resources must be a quoted JSON object: {raw!r}"
    return json.loads(raw[1:-1].replace('\\"', '"'))


def k8s_quantity(value) -> float:
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


RUN_OPTIONS_MOUNT = "/etc/stam-label/run/"


def parse_run_command(words: list[str]):
    """Parse `stam-label run ...` with the real command's option parser (nothing runs).

    A --config under the head pod's mount of the run-options ConfigMap reads that ConfigMap's
    file from infra/k8s/run-options.yaml, as the pod would.
    """
    import tempfile

    from jobs.cli import main

    assert words[:2] == ["stam-label", "run"], words
    words = list(words[2:])
    for i, word in enumerate(words):
        if word.startswith(RUN_OPTIONS_MOUNT):
            data = one("ConfigMap", "stam-label-run-options")["data"]
            local = Path(tempfile.mkdtemp()) / word[len(RUN_OPTIONS_MOUNT):]
            local.write_text(data[local.name])
            words[i] = str(local)
    return main.commands["run"].make_context("run", words).params


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    return instructions


def dockerfile_arg_defaults() -> dict[str, str]:
    defaults = {}
    for keyword, args in dockerfile_instructions():
        if keyword == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            defaults.setdefault(name, value)
    return defaults


def dockerfile_ray_version() -> str:
    return dockerfile_arg_defaults()["RAY_VERSION"]


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """The repo-root .dockerignore as (negated, regex) in order; Docker's rules, last match wins."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def dockerignored(relpath: str) -> bool:
    """Whether Docker leaves `relpath` out of the build context (a pattern on a folder covers its files)."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in dockerignore_patterns():
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded


def code_blocks(path: Path) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), flags=re.S)


def run_commands_in(path: Path) -> list[list[str]]:
    """Every `stam-label run ...` command line in a Markdown file's code blocks."""
    commands = []
    for block in code_blocks(path):
        text = re.sub(r"\\\n\s*", " ", block)  # join shell continuation lines
        for line in text.splitlines():
            if "stam-label run" in line:
                commands.append(command_words(line))
    return commands


def command_words(line: str) -> list[str]:
    """The words of the `stam-label run ...` command inside a shell line: up to the end of the
    quoted string it sits in, if any, and up to the first shell operator."""
    head, command = line[: line.index("stam-label run")], line[line.index("stam-label run"):]
    for quote in "'\"":
        if head.count(quote) % 2:  # the command is inside a quoted string: stop at its end
            command = command[: command.index(quote)]
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = []
    for word in lexer:
        if set(word) <= set(";&|<>"):
            break
        words.append(word)
    return words


# ---- ray_cluster.yaml (Ray cluster launcher) ------------------------------------------------
@pytest.fixture(scope="module")
def launcher_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_rays_validator(launcher_config):
    # Ray offers no public validator for cluster-launcher configs; `ray up` runs this private one.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(copy.deepcopy(launcher_config))
    # What `ray up` does: fill in the provider's defaults, then validate again.
    validate_config(prepare_config(copy.deepcopy(launcher_config)))


def test_ray_validator_rejects_a_broken_copy(launcher_config):
    """The validator is not a no-op: a fractional resource count is refused."""
    import jsonschema

    from ray.autoscaler._private.util import validate_config  # no public one (see above)

    broken = copy.deepcopy(launcher_config)
    broken["available_node_types"]["gpu"]["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)


def test_cluster_yaml_node_types_and_placement_resources(launcher_config):
    types = launcher_config["available_node_types"]
    head = types[launcher_config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head must not run tasks or actors"

    decode = [t for t in types.values() if "stam_decode" in t["resources"]]
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert len(decode) == 1 and len(gpu) == 1, "one decode (CPU) type and one GPU type"
    decode, gpu = decode[0], gpu[0]
    assert decode["resources"]["stam_decode"] == decode["resources"]["CPU"] >= 16
    assert "GPU" not in decode["resources"]
    assert "stam_decode" not in gpu["resources"], "decoding must not land on GPU nodes"
    assert gpu["resources"]["CPU"] >= 1

    for name, node_type in types.items():
        assert node_type["node_config"].get("InstanceType"), name
        assert node_type["node_config"].get("IamInstanceProfile"), f"{name}: S3 access comes from an instance profile"
        if node_type is not head:
            assert 1 <= node_type["min_workers"] <= node_type["max_workers"], name
    worker_max = sum(t.get("max_workers", 0) for t in types.values() if t is not head)
    assert worker_max <= launcher_config["max_workers"]


def test_cluster_yaml_installs_this_project(launcher_config):
    mounts = launcher_config["file_mounts"]
    remote = next(r for r, local in mounts.items() if local == ".")
    setup = " ; ".join(launcher_config["setup_commands"])
    assert f"pip install --no-cache-dir {remote} " in setup, "setup installs the synced checkout"
    assert f'"ray[data]=={dockerfile_ray_version()}"' in setup, "Ray held at the image's version"
    excluded = " ".join(launcher_config["rsync_exclude"])
    assert ".venv" in excluded and ".git" in excluded
    # The weights helper the setup command calls exists (read, not imported: no torch here).
    weights_src = (ROOT / "stam_core" / "weights.py").read_text()
    assert "resolve_weights" in setup
    assert "resolve_weights" in {n.name for n in ast.parse(weights_src).body if isinstance(n, ast.FunctionDef)}


def test_cluster_yaml_image_and_auth(launcher_config):
    image = launcher_config["docker"]["image"]
    assert image == f"rayproject/ray:{dockerfile_ray_version()}-py311-gpu", "same Ray as infra/Dockerfile"
    assert launcher_config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    for cmd in launcher_config["head_start_ray_commands"] + launcher_config["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd, "a node without the token must fail, not run open"


# ---- infra/Dockerfile and .dockerignore ------------------------------------------------------
KNOWN_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}


def test_dockerfile_parses():
    instructions = dockerfile_instructions()
    keywords = [k for k, _ in instructions]
    assert set(keywords) <= KNOWN_INSTRUCTIONS, set(keywords) - KNOWN_INSTRUCTIONS
    first = next(i for i, k in enumerate(keywords) if k != "ARG")
    assert keywords[first] == "FROM", "only ARG may come before FROM"
    base = instructions[first][1]
    for name, value in dockerfile_arg_defaults().items():
        base = base.replace("${%s}" % name, value)
    assert re.fullmatch(r"rayproject/ray:\d+\.\d+\.\d+-py311-gpu", base), base


def test_dockerfile_installs_what_pyproject_declares():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    instructions = dockerfile_instructions()
    copied = set()
    for keyword, args in instructions:
        if keyword == "COPY":
            words = [w for w in args.split() if not w.startswith("--")]
            copied.update(w.rstrip("/") for w in words[:-1])
    top_level = {p.split(".")[0] for p in pyproject["tool"]["setuptools"]["packages"]}  # COPY jobs brings jobs.stages
    needed = {"pyproject.toml", pyproject["project"]["readme"], *top_level}
    assert needed <= copied, f"not copied into the image: {needed - copied}"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"

    runs = " && ".join(args for keyword, args in instructions if keyword == "RUN")
    install = re.search(r"pip install (?:--\S+ )*\. ([^&]*)", runs)
    assert install, "the image installs the project itself (pip install .), so it gets what pyproject declares"
    extra = shlex.split(install.group(1))
    assert extra == ['ray[data]==${RAY_VERSION}'], f"only Ray is pinned beside the project: {extra}"
    declared = {re.split(r"[\[<>=;! ]", d, maxsplit=1)[0] for d in pyproject["project"]["dependencies"]}
    assert {"ray", "av", "decord"} <= declared
    smoke = re.search(r'python -c "import ([^;"]+)', runs).group(1)
    imported = {m.strip() for m in smoke.split(",")}
    assert {"av", "decord", "torch", "stam_core", "jobs.cli", "ray"} <= imported, "the build checks the decoders import"
    assert "stam-label run --help" in runs, "the console script is installed"
    assert "sha256sum --check" in runs, "kubectl is checked against its digest"


def test_dockerignore_keeps_the_context_to_what_the_image_needs():
    for path in ["pyproject.toml", "README.md"]:
        assert not dockerignored(path), path
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in pyproject["tool"]["setuptools"]["packages"]:
        files = [p for p in (ROOT / package.replace(".", "/")).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
        assert files
        for p in files:
            rel = p.relative_to(ROOT).as_posix()
            assert not dockerignored(rel), f"{rel} is left out of the build context"
    for path in [".venv/bin/python", ".git/HEAD", "tests/test_infra.py", "jobs/__pycache__/cli.cpython-311.pyc",
                 "demo-output/x.parquet", ".env", "infra/Dockerfile"]:
        assert dockerignored(path), f"{path} would be sent to the Docker daemon"


# ---- KubeRay manifests -----------------------------------------------------------------------
API_VERSIONS = {
    "Namespace": "v1", "ServiceAccount": "v1", "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1", "RayJob": "ray.io/v1", "CronJob": "batch/v1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1", "ConfigMap": "v1",
}


def test_every_k8s_document_parses_with_known_kind_and_api_version():
    docs = k8s_docs()
    assert docs
    for path, doc in docs:
        assert doc.get("kind") in API_VERSIONS, f"{path.name}: unexpected kind {doc.get('kind')}"
        assert doc["apiVersion"] == API_VERSIONS[doc["kind"]], f"{path.name}: {doc['kind']} {doc['apiVersion']}"
        if doc["kind"] != "Kustomization":
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]["name"]
        if doc["kind"] not in ("Namespace", "Kustomization"):
            assert doc["metadata"]["namespace"] == one("Namespace")["metadata"]["name"], path.name


def test_rayjob_runs_stam_label_on_its_own_cluster():
    spec = rayjob()["spec"]
    words = shlex.split(spec["entrypoint"])
    params = parse_run_command(words)
    assert params["input_uri"].startswith("s3://") and params["output_uri"].startswith("s3://")
    assert spec["shutdownAfterJobFinishes"] is True, "the cluster goes away when the run ends"
    assert spec["activeDeadlineSeconds"] < 24 * 3600, "a stuck run ends before the next night"
    assert cluster_spec()["rayVersion"] == dockerfile_ray_version()
    assert cluster_spec()["enableInTreeAutoscaling"] is True
    assert cluster_spec()["authOptions"]["mode"] == "token"


def test_rayjob_groups_place_decoding_and_the_model_apart():
    head = cluster_spec()["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0", "the head must not run tasks or actors"

    decode = worker_group("decode")
    decode_container = decode["template"]["spec"]["containers"][0]
    cpus = int(decode["rayStartParams"]["num-cpus"])
    assert ray_start_resources(decode) == {"stam_decode": cpus}, "stam_decode equals the decode pods' CPUs"
    assert k8s_quantity(decode_container["resources"]["limits"]["cpu"]) == cpus
    assert not any(k.endswith("gpu") for k in decode_container["resources"]["limits"])

    gpu = worker_group("gpu")
    gpu_container = gpu["template"]["spec"]["containers"][0]
    gpus = int(gpu_container["resources"]["limits"]["nvidia.com/gpu"])
    assert gpus >= 1
    assert "stam_decode" not in ray_start_resources(gpu)
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["template"]["spec"]["tolerations"])
    assert not decode["template"]["spec"].get("tolerations"), "decode pods stay off tainted GPU nodes"

    for group in (decode, gpu):
        assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]

    # The command asks for exactly what the groups can hold at their maximum size.
    params = parse_run_command(shlex.split(rayjob()["spec"]["entrypoint"]))
    assert params["decode_workers"] == decode["maxReplicas"] * cpus
    assert params["model_workers"] * params["gpus_per_worker"] == gpu["maxReplicas"] * gpus


def test_rayjob_cluster_as_rays_kuberay_autoscaler_reads_it():
    """Ray's own translation of the RayCluster spec (it also runs Ray's config validator)."""
    # Private too: Ray offers no public API for what its KubeRay autoscaler reads from a RayCluster.
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    ray_cr = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
              "metadata": {"name": "stam-label", "namespace": "stam-label"}, "spec": cluster_spec()}
    node_types = _derive_autoscaling_config_from_ray_cr(ray_cr)["available_node_types"]
    head = next(t for name, t in node_types.items() if t["max_workers"] == 0)
    assert head["resources"]["CPU"] == 0
    assert node_types["decode"]["resources"]["stam_decode"] == node_types["decode"]["resources"]["CPU"]
    assert "GPU" not in node_types["decode"]["resources"]
    assert node_types["gpu"]["resources"]["GPU"] >= 1
    assert "stam_decode" not in node_types["gpu"]["resources"]


def test_ray_pods_share_one_image_and_the_s3_service_account():
    pods = [cluster_spec()["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in cluster_spec()["workerGroupSpecs"]]
    images = {p["containers"][0]["image"] for p in pods}
    assert len(images) == 1, images
    accounts = {p.get("serviceAccountName") for p in pods}
    assert len(accounts) == 1 and None not in accounts
    account = one("ServiceAccount", accounts.pop())
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def cron_field_ok(field: str, low: int, high: int) -> bool:
    for item in field.split(","):
        base, _, step = item.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if base == "*":
            continue
        bounds = base.split("-")
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            return False
        values = [int(b) for b in bounds]
        if not all(low <= v <= high for v in values) or values != sorted(values):
            return False
    return True


def test_cron_field_checker():
    assert cron_field_ok("0", 0, 59) and cron_field_ok("*/15", 0, 59) and cron_field_ok("1-5,7", 0, 7)
    assert not cron_field_ok("60", 0, 59) and not cron_field_ok("5-1", 0, 23) and not cron_field_ok("*/0", 0, 59)


def test_cronjob_runs_nightly_and_never_overlaps():
    cron = one("CronJob")
    fields = cron["spec"]["schedule"].split()
    assert len(fields) == 5, cron["spec"]["schedule"]
    ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    assert all(cron_field_ok(f, lo, hi) for f, (lo, hi) in zip(fields, ranges)), cron["spec"]["schedule"]
    assert fields[2:] == ["*", "*", "*"], "once a day"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert job["activeDeadlineSeconds"] < 24 * 3600


def test_cronjob_starts_the_same_rayjob_and_waits_for_it(tmp_path):
    cron = one("CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][:1] == ["/bin/bash"]
    script = container["args"][-1]
    script_file = tmp_path / "nightly.sh"
    script_file.write_text(script)
    subprocess.run(["bash", "-n", str(script_file)], check=True)

    # It mounts the ConfigMap that kustomization.yaml makes of rayjob.yaml, creates that
    # RayJob by its fixed name and waits for a terminal state.
    kustomization = one("Kustomization")
    generator = next(g for g in kustomization["configMapGenerator"] if "rayjob.yaml" in g["files"])
    volume = next(v for v in pod["volumes"] if v.get("configMap", {}).get("name") == generator["name"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert f"{mount['mountPath']}/rayjob.yaml" in script
    assert re.search(rf"^\s*job={re.escape(rayjob()['metadata']['name'])}\b", script, flags=re.M)
    assert "kubectl create -f" in script and "jobDeploymentStatus" in script
    assert re.search(r"\[\[ \"\$result\" == SUCCEEDED \]\]\s*$", script), "the pod's exit status is the run's"
    assert container["image"] == cluster_spec()["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]


def test_nightly_service_account_can_only_manage_rayjobs():
    cron = one("CronJob")
    account = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"]
    assert "annotations" not in one("ServiceAccount", account)["metadata"], "the CronJob's pod needs no AWS role"
    binding = next(d for _, d in k8s_docs() if d["kind"] == "RoleBinding"
                   and any(s["name"] == account for s in d["subjects"]))
    role = one("Role", binding["roleRef"]["name"])
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["ray.io"] and rule["resources"] == ["rayjobs"], rule
        assert set(rule["verbs"]) <= {"get", "list", "watch", "create", "delete"}


def test_kustomization_installs_everything_but_does_not_start_a_run():
    kustomization = one("Kustomization")
    resources = set(kustomization["resources"])
    generated = {f for g in kustomization.get("configMapGenerator", []) for f in g["files"]}
    for name in resources | generated:
        assert (K8S / name).is_file(), name
    assert "rayjob.yaml" not in resources, "applying the kustomization must not start a run"
    assert "rayjob.yaml" in generated
    all_files = {p.name for p in K8S.glob("*.yaml")}
    assert all_files == resources | generated | {"kustomization.yaml"}, "every manifest is installed"


def test_no_credentials_in_cluster_files():
    files = [CLUSTER_YAML, DOCKERFILE, POLICY, ROOT / ".dockerignore", *K8S.glob("*.yaml")]
    for path in files:
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
        assert not re.search(r"aws_(secret_access_key|access_key_id|session_token)", text, flags=re.I), path


# ---- documented commands ---------------------------------------------------------------------
def test_documented_run_commands_parse():
    assert run_commands_in(ROOT / "docs" / "cluster.md"), "docs/cluster.md shows how to run the job"
    for doc in ("docs/cluster.md", "infra/README.md"):
        for words in run_commands_in(ROOT / doc):
            parse_run_command(words)


def test_cluster_yaml_header_command_parses():
    header = "\n".join(line.lstrip("#") for line in CLUSTER_YAML.read_text().splitlines() if line.startswith("#"))
    text = re.sub(r"\\\n\s*", " ", header)
    line = next(line for line in text.splitlines() if "stam-label run" in line)
    params = parse_run_command(command_words(line))
    # The example asks for what the node types hold at their maximum size.
    types = yaml.safe_load(CLUSTER_YAML.read_text())["available_node_types"]
    decode = next(t for t in types.values() if "stam_decode" in t["resources"])
    gpu = next(t for t in types.values() if t["resources"].get("GPU", 0) >= 1)
    assert params["decode_workers"] == decode["max_workers"] * decode["resources"]["stam_decode"]
    assert params["model_workers"] * params["gpus_per_worker"] == gpu["max_workers"] * gpu["resources"]["GPU"]


# ---- infra/iam-policy.json -------------------------------------------------------------------
def policy() -> dict:
    return json.loads(POLICY.read_text())


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, prefix.rstrip("/")


def job_locations() -> tuple[tuple[str, str], tuple[str, str]]:
    params = parse_run_command(shlex.split(rayjob()["spec"]["entrypoint"]))
    return split_s3(params["input_uri"]), split_s3(params["output_uri"])


def test_policy_is_s3_only_and_has_no_wildcard_grants():
    doc = policy()
    assert doc["Version"] == "2012-10-17"
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow"
        assert set(st) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, st
        for action in as_list(st["Action"]):
            assert action.startswith("s3:") and "*" not in action, action
        for resource in as_list(st["Resource"]):
            assert resource != "*" and resource.startswith("arn:aws:s3:::"), resource
            bucket = resource[len("arn:aws:s3:::"):].split("/")[0]
            assert "*" not in bucket and "?" not in bucket, resource


def test_policy_grants_least_privilege_on_the_jobs_prefixes():
    (in_bucket, in_prefix), (out_bucket, out_prefix) = job_locations()
    grants: dict[tuple[str, str], set[str]] = {}
    for st in policy()["Statement"]:
        for resource in as_list(st["Resource"]):
            path = resource[len("arn:aws:s3:::"):]
            bucket, _, key = path.partition("/")
            actions = set(as_list(st["Action"]))
            if not key:  # bucket-level: listing only; on the input, only under the job's prefix
                assert actions == {"s3:ListBucket"}, st
                if bucket == in_bucket:
                    prefixes = st["Condition"]["StringLike"]["s3:prefix"]
                    assert prefixes and all(p.startswith(in_prefix + "/") for p in as_list(prefixes)), st
                else:
                    # delta-rs needs a 404 (not 403) for the missing _delta_log/_last_checkpoint,
                    # which S3 gives only to a caller that may list the bucket.
                    assert "Condition" not in st, st
            else:
                own = in_prefix if bucket == in_bucket else out_prefix
                assert key.startswith(own + "/"), f"{resource} is outside {own}/"
            grants.setdefault((bucket, "bucket" if not key else "objects"), set()).update(actions)
    assert set(grants) == {(in_bucket, "bucket"), (in_bucket, "objects"), (out_bucket, "bucket"), (out_bucket, "objects")}
    assert grants[(in_bucket, "objects")] == {"s3:GetObject"}, "the input is read-only"
    # Output: read the committed table, write parts and manifests; DeleteObject for the
    # writability probe the job removes; AbortMultipartUpload for a failed part upload.
    assert grants[(out_bucket, "objects")] == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                               "s3:AbortMultipartUpload"}


def iam_allows(doc: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    """IAM evaluation for Allow/Deny statements with StringLike/StringEquals conditions.

    A condition on a key the request does not carry is false (no ...IfExists operators).
    """
    allowed = False
    for st in doc["Statement"]:
        if not any(fnmatchcase(action.lower(), a.lower()) for a in as_list(st["Action"])):
            continue
        if not any(fnmatchcase(resource, r) for r in as_list(st["Resource"])):
            continue
        holds = True
        for operator, keys in st.get("Condition", {}).items():
            assert operator in ("StringLike", "StringEquals"), f"teach iam_allows {operator}"
            for key, values in keys.items():
                actual = context.get(key)
                if actual is None:
                    holds = False
                elif operator == "StringLike":
                    holds &= any(fnmatchcase(actual, v) for v in as_list(values))
                else:
                    holds &= actual in as_list(values)
        if not holds:
            continue
        if st["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def s3_permissions(method: str, target: str, status: int) -> list[tuple[str, str, dict]]:
    """The IAM permissions one S3 REST request needs: (action, resource ARN, condition context)."""
    parts = urlsplit(target)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    key = unquote(key)
    query = parse_qs(parts.query, keep_blank_values=True)
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if not key:
        if method == "HEAD":  # HeadBucket
            return [("s3:ListBucket", bucket_arn, {})]
        if method == "GET" and "delete" not in query:  # ListObjects(V2)
            context = {"s3:prefix": query["prefix"][0]} if "prefix" in query else {}
            return [("s3:ListBucket", bucket_arn, context)]
        raise AssertionError(f"unmapped bucket request {method} {target}: teach s3_permissions")
    object_arn = f"{bucket_arn}/{key}"
    if method in ("GET", "HEAD"):
        needed = [("s3:GetObject", object_arn, {})]
        if status == 404:  # S3 answers 404 rather than 403 only to callers who may list the bucket
            needed.append(("s3:ListBucket", bucket_arn, {}))
        return needed
    if method == "PUT" or (method == "POST" and ("uploads" in query or "uploadId" in query)):
        return [("s3:PutObject", object_arn, {})]  # PutObject, multipart create/part/complete
    if method == "DELETE":
        return [("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject", object_arn, {})]
    raise AssertionError(f"unmapped object request {method} {target}: teach s3_permissions")


@pytest.fixture(scope="module")
def s3_calls_of_a_run(local_s3):
    """Every S3 request the job's storage code makes for one run and a rerun, at the policy's locations."""
    import datetime as dt

    import pyarrow as pa

    from jobs import preflight
    from jobs.runs import read_run_records, write_run_record
    from jobs.schema import output_schema
    from jobs.storage import resolve
    from jobs.table import LabelTable

    (in_bucket, in_prefix), (out_bucket, out_prefix) = job_locations()
    client = local_s3.client()
    existing = {b["Name"] for b in client.list_buckets()["Buckets"]}
    for bucket in (in_bucket, out_bucket):
        if bucket not in existing:
            local_s3.create_bucket(bucket)
    client.put_object(Bucket=in_bucket, Key=f"{in_prefix}/a.mp4", Body=b"\0" * 64)
    client.put_object(Bucket=in_bucket, Key=f"{in_prefix}/2026/b.mkv", Body=b"\0" * 64)
    client.put_object(Bucket=in_bucket, Key="elsewhere/c.mp4", Body=b"\0" * 64)

    log_start = len(local_s3.request_log())
    input_uri, output_uri = f"s3://{in_bucket}/{in_prefix}/", f"s3://{out_bucket}/{out_prefix}/"
    for seq, run_id in enumerate(("20261101T020000Z-aaaaaa", "20261102T020000Z-bbbbbb"), 1):
        # Listing runs as Ray tasks; tests/test_listing.py replays its requests against this policy.
        fs, path = resolve(f"{input_uri}2026/b.mkv")  # what a decode worker reads
        with fs.open_input_file(path) as f:
            assert f.read(16)
        preflight.check(input_uri, output_uri)  # what `run` asks before anything else
        table = LabelTable(output_uri)
        table.is_legacy()
        table.check_writable()
        table.read_current()
        write_run_record(table, run_id, {"run_id": run_id, "status": "running"})
        table.ensure_created(output_schema())
        refs = [f"{input_uri}2026/b.mkv", f"{input_uri}a.mp4"]
        rows = pa.Table.from_pylist([{"video_uri": uri, "mode": "video", "segment_index": 0, "status": "ok",
                                      "run_id": run_id, "labelled_at": dt.datetime.now(dt.timezone.utc)}
                                     for uri in refs], schema=output_schema())
        table.commit(rows, run_id=run_id, seq=1)
        write_run_record(table, run_id, {"run_id": run_id, "status": "completed"})
        assert table.read_current().num_rows == 2
        read_run_records(table)
    calls: list[tuple[str, str, int]] = []
    for line in local_s3.request_log()[log_start:].splitlines():
        line = re.sub(r"\x1b\[[\d;]*m", "", line)
        match = re.search(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})', line)
        if match:
            calls.append((match.group(1), match.group(2), int(match.group(3))))
    # pyarrow's probe of an impossible bucket name (custom endpoints only) needs no permission.
    return [c for c in calls if "$" not in c[1]]


def denied_calls(calls) -> list[tuple[str, str, str]]:
    doc = policy()
    denied = []
    for method, target, status in calls:
        for action, resource, context in s3_permissions(method, target, status):
            if not iam_allows(doc, action, resource, context):
                denied.append((f"{method} {target} -> {status}", action, resource))
    return denied


def test_iam_evaluator_follows_aws_rules():
    doc = {"Statement": [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
         "Condition": {"StringLike": {"s3:prefix": ["p/", "p/*"]}}},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/p/*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/p/secret"},
    ]}
    assert iam_allows(doc, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "p/x/"})
    assert not iam_allows(doc, "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "q/"})
    assert not iam_allows(doc, "s3:ListBucket", "arn:aws:s3:::b", {}), "no prefix: condition false"
    assert iam_allows(doc, "s3:GetObject", "arn:aws:s3:::b/p/a/b.mp4", {})
    assert not iam_allows(doc, "s3:GetObject", "arn:aws:s3:::b/q/a.mp4", {})
    assert not iam_allows(doc, "s3:GetObject", "arn:aws:s3:::b/p/secret", {})
    assert not iam_allows(doc, "s3:PutObject", "arn:aws:s3:::b/p/a", {})
    assert s3_permissions("GET", "/b?list-type=2&prefix=p/", 200) == [("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "p/"})]
    assert s3_permissions("HEAD", "/b/p/x", 404)[1] == ("s3:ListBucket", "arn:aws:s3:::b", {})
    assert s3_permissions("DELETE", "/b/p/x?uploadId=1", 204)[0][0] == "s3:AbortMultipartUpload"


def is_known_gap(call: str, resource: str) -> bool:
    """Requests the prefix-scoped policy denies today, from jobs/ code (see infra/README.md):
    HeadBucket, from pyarrow's create_dir(recursive=True) in LabelTable.check_writable; and a
    HEAD of the prefix's own key (no trailing slash), from get_file_info(prefix) in
    the listing and pyarrow.dataset.dataset(prefix)."""
    (in_bucket, in_prefix), (out_bucket, out_prefix) = job_locations()
    method, target = call.split()[:2]
    prefix_keys = {f"/{in_bucket}/{in_prefix}", f"/{out_bucket}/{out_prefix}"}
    return method == "HEAD" and (target in {f"/{in_bucket}", f"/{out_bucket}"} or target in prefix_keys)


def test_policy_allows_every_object_request_of_a_run(s3_calls_of_a_run):
    """Reading videos, listing under the prefixes, writing and reading the table: all allowed.
    The only denied requests are the known ones from the storage code (next test)."""
    assert any(m == "PUT" or m == "POST" for m, _, _ in s3_calls_of_a_run)
    unexpected = [d for d in denied_calls(s3_calls_of_a_run) if not is_known_gap(d[0], d[2])]
    assert not unexpected, "the policy denies requests the job makes:\n" + "\n".join(map(str, unexpected))
    assert not any("elsewhere/" in target for _, target, _ in s3_calls_of_a_run)


def test_policy_allows_every_request_of_a_run(s3_calls_of_a_run):
    denied = denied_calls(s3_calls_of_a_run)
    assert not denied, "\n".join(map(str, denied))
