"""The project's shape as a user installs and reads it."""

import glob
import os
import re
import subprocess
import sys
import zipfile

import pytest

import flags
from cifar10_research import sweeping
from tests.conftest import ROOT


@pytest.mark.slow
def test_an_installed_copy_adds_only_the_four_entry_files_and_one_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path), ROOT],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = glob.glob(str(tmp_path / "*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = {name.split("/")[0] for name in archive.namelist()
                 if ".dist-info" not in name.split("/")[0]}
    assert names == {"cifar10_research", "data.py", "flags.py", "model.py", "train.py"}


@pytest.mark.parametrize("recipe", sorted(glob.glob(os.path.join(ROOT, "recipes", "*.flags"))))
def test_every_recipe_is_a_flagfile_of_valid_settings(recipe):
    try:
        flags.FLAGS(["train.py", f"--flagfile={recipe}"])
        config = flags.to_config()
    finally:
        flags.FLAGS.unparse_flags()
    name, recipe_flags = sweeping.read_recipe_file(recipe)
    assert name == os.path.basename(recipe)[:-len(".flags")]
    for line in recipe_flags:
        setting, _, value = line[2:].partition("=")
        expected = flags.FLAGS[setting].parser.parse(value) if value else True
        assert getattr(config, setting) == expected, line


def test_no_source_file_is_over_300_lines():
    sources = glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(
        os.path.join(ROOT, "*", "*.py"))
    long = [os.path.relpath(path, ROOT) for path in sources if len(open(path).readlines()) > 300]
    assert long == []


def test_every_image_and_page_the_docs_show_is_in_the_repository():
    pages = [os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md"))
    shown = []
    for page in pages:
        links = re.findall(r"\]\(([^)#:]+\.(?:png|md))\)", open(page).read())
        shown += [os.path.relpath(os.path.join(os.path.dirname(page), link), ROOT)
                  for link in links]
    tracked = subprocess.run(["git", "ls-files", *set(shown)], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert shown and sorted(tracked) == sorted(set(shown))


def test_the_readme_is_a_front_page():
    assert len(open(os.path.join(ROOT, "README.md")).readlines()) <= 300


def test_committed_results_hold_no_path_of_the_machine_that_made_them():
    for path in glob.glob(os.path.join(ROOT, "docs", "*.md")) + [os.path.join(ROOT, "README.md")]:
        text = open(path).read()
        assert not re.search(r"(?<![\w.])/(work|tmp|home|root|Users)/", text), path


@pytest.mark.slow
@pytest.mark.parametrize("module", ["model", "data", "flags"])
def test_importing_any_top_file_first_prints_nothing(module):
    """As a notebook does: `import model` first still imports TensorFlow quietly."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == ""
