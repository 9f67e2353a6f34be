"""Documentation that cannot drift: the configuration reference is generated from the code and
covers every key; the README's quickstart and the concept pages exist and link correctly."""

import dataclasses
import re
from pathlib import Path

from scalezero.config_reference import SECTIONS, config_reference, field_docs

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_current():
    checked_in = (ROOT / "docs" / "configuration.md").read_text()
    assert checked_in == config_reference(), "regenerate: python -m scalezero.config_reference > docs/configuration.md"


def test_every_config_key_is_documented():
    page = (ROOT / "docs" / "configuration.md").read_text()
    for section, cls, _ in SECTIONS:
        docs = field_docs(cls)
        body = page.split(f"## `{section}`", 1)[1].split("\n## ", 1)[0]
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{section}.{f.name} has no docstring"
            assert f"| `{f.name}` |" in body, f"{section}.{f.name} missing from docs/configuration.md"


def test_readme_quickstart_and_links():
    readme = (ROOT / "README.md").read_text()
    for command in ("make demo", "make test", "scalezero train", "scalezero eval", "scalezero report", "from scalezero import train, load_agent"):
        assert command in readme, command
    for page in ("docs/tasks.md", "docs/search.md", "docs/moe.md", "docs/dps.md", "docs/configuration.md", "ARCHITECTURE.md", "BENCHMARKS.md"):
        assert (ROOT / page).exists(), page
    # Every relative Markdown link in the docs points at a file that exists.
    for doc in [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *(ROOT / "docs").glob("*.md"), ROOT / "examples" / "custom_task" / "README.md"]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
