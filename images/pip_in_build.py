"""pip inside an image build, with the build host's pip settings, none of which stays in a layer.

    RUN python /tmp/lead/images/pip_in_build.py install ARGS...

When the build argument PIP_SETTINGS_URL is set, images/build.py serves the host's pip settings
there for the duration of the build (a pip.conf whose local index folders, wheel folders, CA bundle
and constraint files it serves too). This fetches the pip.conf and the files it names into a
temporary folder, runs pip with PIP_CONFIG_FILE pointing at it and deletes the folder whatever
pip's outcome, inside the same RUN: the layer keeps the installed packages only. Without
PIP_SETTINGS_URL it is plain pip. Standard library only (it runs before anything is installed).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

SETTINGS_DIR = "@SETTINGS_DIR@"  # placeholder in the served pip.conf: the temporary folder


def fetch_settings(url: str, folder: str) -> str:
    """Download the manifest's files into `folder`; return the path of the pip.conf written there."""
    with urllib.request.urlopen(f"{url}/manifest.json", timeout=60) as response:
        manifest = json.load(response)
    for name in manifest["files"]:
        with urllib.request.urlopen(f"{url}/files/{name}", timeout=60) as response:
            with open(os.path.join(folder, name), "wb") as out:
                shutil.copyfileobj(response, out)
    path = os.path.join(folder, "pip.conf")
    with open(path, "w") as out:
        out.write(manifest["pip_conf"].replace(SETTINGS_DIR, folder))
    return path


def main(argv: list[str]) -> int:
    url = os.environ.pop("PIP_SETTINGS_URL", "").rstrip("/")
    command = [sys.executable, "-m", "pip", *argv]
    if not url:
        return subprocess.call(command)
    folder = tempfile.mkdtemp(prefix="lead-pip-")
    try:
        env = {**os.environ, "PIP_CONFIG_FILE": fetch_settings(url, folder)}
        return subprocess.call(command, env=env)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
