"""The execution environment is built from the collection tarball as a local file, without Galaxy.

The steps of docs/awx.md, on the tarball of ``make build``: a build directory with the tarball and the tarball's
meta/ directory, meta/execution-environment.yml copied to execution-environment.yml, then ``ansible-builder create``
(ansible-builder pinned in tests/requirements-ee.txt, in a venv of this test's). ``create`` only writes the build
context, so no container engine is needed. The context must carry the tarball and the Python and system requirements
and the Containerfile must install them. The two steps of the image build that concern the collection then run here,
as the Containerfile runs them: ``ansible-galaxy collection install -r requirements.yml`` in ``_build`` (offline:
the dependencies galaxy.yml declares come from the collections this venv has, standing in for the base image's),
and ansible-builder's introspection of the installed collections, which must find meta/ee-requirements.txt through
the installed collection's meta/execution-environment.yml.

``make test-artifact`` runs this file (``make pytest`` leaves it out).
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# what ansible-builder's introspection leaves out of a collection's Python requirements (its EXCLUDE_REQUIREMENTS):
# ansible-core brings PyYAML
INTROSPECTION_DROPS = {"pyyaml"}


def _run(cmd, **kwargs):
    kwargs.setdefault("timeout", 600)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, "%s failed (%d)\nSTDOUT:\n%s\nSTDERR:\n%s" % (
        " ".join(map(str, cmd)), proc.returncode, proc.stdout[-6000:], proc.stderr[-6000:])
    return proc


def _requirement_lines(text):
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def _name(requirement):
    return re.split(r"[<>=!~;\[ ]", requirement, 1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    """ansible-builder at the version of tests/requirements-ee.txt, in a venv of its own."""
    venv = tmp_path_factory.mktemp("builder") / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", "--no-compile", "-r", os.path.join(REPO, "tests", "requirements-ee.txt"),
          "-c", os.path.join(REPO, "tests", "requirements.txt")], timeout=600)
    _run([python, "-m", "pip", "check"])
    version = _run([str(venv / "bin" / "ansible-builder"), "--version"]).stdout.strip()
    print("ansible-builder %s" % version)
    return {"python": python, "bin": str(venv / "bin"), "version": version}


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    _run(["make", "--no-print-directory", "-C", REPO, "build", "DIST=%s" % dist], env=env, timeout=300)
    found = sorted(dist.glob("kubepki-certs-*.tar.gz"))
    assert len(found) == 1, list(dist.iterdir())
    return found[0]


@pytest.fixture(scope="module")
def context(builder, tarball, tmp_path_factory):
    """The build directory of docs/awx.md and the context ``ansible-builder create`` writes from it."""
    build = tmp_path_factory.mktemp("ee-build")
    shutil.copy2(str(tarball), str(build / tarball.name))
    with tarfile.open(str(tarball)) as archive:
        members = [member for member in archive.getmembers() if member.name.lstrip("./").startswith("meta/")]
        archive.extractall(str(build), members=members)  # noqa: S202  our own tarball
    shutil.copy2(str(build / "meta" / "execution-environment.yml"), str(build / "execution-environment.yml"))
    proc = _run([os.path.join(builder["bin"], "ansible-builder"), "create", "-f", "execution-environment.yml", "--context", "context",
                 "--output-filename", "Containerfile", "-v", "3"], cwd=str(build), timeout=300)
    assert "No matches for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr  # a file the definition names is missing
    return {"build": build, "dir": build / "context", "tarball": tarball, "log": proc.stdout}


def test_the_definition_names_the_tarball_of_this_version(tarball):
    """meta/execution-environment.yml (and docs/awx.md) name the tarball, whose name carries galaxy.yml's version."""
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        galaxy = yaml.safe_load(handle)
    expected = "kubepki-certs-%s.tar.gz" % galaxy["version"]
    assert tarball.name == expected
    with open(os.path.join(REPO, "meta", "execution-environment.yml")) as handle:
        definition = yaml.safe_load(handle)
    assert definition["version"] == 3
    assert [entry["src"] for entry in definition["additional_build_files"]] == [expected], \
        "meta/execution-environment.yml: additional_build_files must copy %s (galaxy.yml's version)" % expected
    sources = [entry.get("source") for entry in definition["dependencies"]["galaxy"]["collections"]]
    assert sources == ["collections/%s" % expected], \
        "meta/execution-environment.yml: the galaxy source must be collections/%s (galaxy.yml's version)" % expected
    # read by ansible-builder inside an execution environment too: paths relative to the collection root
    assert definition["dependencies"]["python"] == "meta/ee-requirements.txt"
    assert definition["dependencies"]["system"] == "meta/ee-bindep.txt"
    with open(os.path.join(REPO, "docs", "awx.md")) as handle:
        assert expected in handle.read(), "docs/awx.md must name %s" % expected


def test_the_build_context_carries_the_tarball_and_the_requirements(context):
    build_dir = context["dir"] / "_build"
    # the tarball, byte for byte, where requirements.yml says
    with open(build_dir / "requirements.yml") as handle:
        galaxy = yaml.safe_load(handle)
    assert galaxy["collections"] == [{"name": "kubepki.certs", "type": "file", "source": "collections/%s" % context["tarball"].name}]
    copied = build_dir / "collections" / context["tarball"].name
    assert copied.read_bytes() == context["tarball"].read_bytes()
    # the Python and system requirements are the tarball's meta/ee-requirements.txt and meta/ee-bindep.txt
    meta = context["build"] / "meta"
    assert _requirement_lines((build_dir / "requirements.txt").read_text()) == _requirement_lines((meta / "ee-requirements.txt").read_text())
    assert _requirement_lines((build_dir / "bindep.txt").read_text()) == _requirement_lines((meta / "ee-bindep.txt").read_text())
    containerfile = (context["dir"] / "Containerfile").read_text()
    for step in ('ARG EE_BASE_IMAGE="quay.io/ansible/awx-ee:latest"', "COPY _build /build", "WORKDIR /build",
                 "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml",
                 "COPY _build/requirements.txt requirements.txt", "COPY _build/bindep.txt bindep.txt",
                 "introspect.py introspect --user-pip=requirements.txt --user-bindep=bindep.txt"):
        assert step in containerfile, (step, containerfile)


def test_the_galaxy_and_introspection_steps_install_the_collection_and_its_requirements(context, builder, tmp_path):
    build_dir = context["dir"] / "_build"
    collections = tmp_path / "usr-share-ansible-collections"
    site = next(path for path in sys.path if path.endswith("site-packages"))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH" and not key.startswith("ANSIBLE_")}
    env.update({"ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_GALAXY_DISABLE_GPG_VERIFY": "1",
                "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([str(collections), site])})
    # the Containerfile's galaxy stage, in _build (/build in the image), without Galaxy
    galaxy = os.path.join(os.path.dirname(sys.executable), "ansible-galaxy")
    proc = _run([galaxy, "collection", "install", "--offline", "-r", "requirements.yml", "--collections-path", str(collections)],
                cwd=str(build_dir), env=env, timeout=300)
    assert (collections / "ansible_collections" / "kubepki" / "certs" / "MANIFEST.json").is_file(), proc.stdout
    # the builder stage: introspection of the installed collections, with the user's requirements
    written = tmp_path / "pip.txt"
    _run([builder["python"], str(build_dir / "scripts" / "introspect.py"), "introspect", str(collections),
          "--user-pip=%s" % (build_dir / "requirements.txt"), "--user-bindep=%s" % (build_dir / "bindep.txt"),
          "--write-pip=%s" % written, "--write-bindep=%s" % (tmp_path / "bindep.txt")], cwd=str(build_dir))
    lines = written.read_text().splitlines()
    from_collection = sorted(line.split("#")[0].strip() for line in lines if line.endswith("# from collection kubepki.certs"))
    declared = _requirement_lines((context["build"] / "meta" / "ee-requirements.txt").read_text())
    assert from_collection == sorted(req for req in declared if _name(req) not in INTROSPECTION_DROPS), lines
    from_user = sorted(line.split("#")[0].strip() for line in lines if line.endswith("# from collection user"))
    assert from_user == sorted(declared), lines
    system = (tmp_path / "bindep.txt").read_text()
    for line in _requirement_lines((context["build"] / "meta" / "ee-bindep.txt").read_text()):
        assert "%s  # from collection kubepki.certs" % line in system, system
