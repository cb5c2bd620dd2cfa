"""components/, pipelines/ and images/ are packages of the installed project (no sys.path edits), and
the kfp CLI compiles a pipeline module as its users expect (compile only: cheap)."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
KFP = Path(sys.executable).with_name("kfp")  # the kfp CLI of this environment (kfp's console script)


def _env() -> dict[str, str]:
    """This environment with a fixed image tag (other edits to the tree while the test runs must
    not change the compiled image references between two compiles)."""
    return {**os.environ, "LEAD_CODE_FINGERPRINT": "test-packaging"}


def test_the_installed_project_imports_components_pipelines_and_images_from_anywhere(tmp_path):
    code = (
        "import components, images.build, pipelines.lead_msmarco, pipelines.lead_quality\n"
        "for m in (components, images.build, pipelines.lead_msmarco, pipelines.lead_quality):\n"
        "    print(m.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = [Path(line) for line in done.stdout.splitlines()]
    assert [f.relative_to(REPO).as_posix() for f in files] == [
        "components/__init__.py",
        "images/build.py",
        "pipelines/lead_msmarco.py",
        "pipelines/lead_quality.py",
    ]


def test_kfp_dsl_compile_gives_the_msmarco_profiles_spec(tmp_path):
    """`kfp dsl compile --py pipelines/lead_msmarco.py` (the module's one pipeline, its built-in
    defaults) writes the spec `--compile FILE --profile msmarco` writes."""
    env = _env()
    by_kfp, by_script = tmp_path / "kfp.yaml", tmp_path / "script.yaml"
    done = subprocess.run(
        [str(KFP), "dsl", "compile", "--py", "pipelines/lead_msmarco.py", "--output", str(by_kfp)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, "pipelines/lead_msmarco.py", "--compile", str(by_script), "--profile", "msmarco"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    spec, platform = yaml.safe_load_all(by_kfp.read_text())
    assert spec["pipelineInfo"]["name"] == "lead-msmarco" and len(spec["root"]["dag"]["tasks"]) > 30
    assert [spec, platform] == list(yaml.safe_load_all(by_script.read_text()))
