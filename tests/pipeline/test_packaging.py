"""components/, pipelines/ and images/ are packages of the installed project (no sys.path edits), and
the kfp CLI compiles a pipeline module as its users expect (compile only: cheap)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
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


@pytest.mark.parametrize(
    ("script", "name", "profile"),
    [("lead_msmarco.py", "lead-msmarco", "msmarco"), ("lead_quality.py", "lead-quality", "cpu")],
)
def test_kfp_dsl_compile_gives_the_spec_of_the_script_with_its_default_profile(
    tmp_path, script, name, profile
):
    """`kfp dsl compile --py pipelines/<script>` (the module's one pipeline with its built-in
    defaults) writes the spec `--compile FILE --profile <its defaults' profile>` writes."""
    env = _env()
    by_kfp, by_script = tmp_path / "kfp.yaml", tmp_path / "script.yaml"
    done = subprocess.run(
        [str(KFP), "dsl", "compile", "--py", f"pipelines/{script}", "--output", str(by_kfp)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, f"pipelines/{script}", "--compile", str(by_script), "--profile", profile],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    spec, platform = yaml.safe_load_all(by_kfp.read_text())
    assert spec["pipelineInfo"]["name"] == name and len(spec["root"]["dag"]["tasks"]) > 10
    assert [spec, platform] == list(yaml.safe_load_all(by_script.read_text()))
