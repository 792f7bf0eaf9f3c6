"""The tutorial reader and validator (sandboxes/classroom/scenario.py) on files in
memory: what a learner would see, and every problem with its file and line."""

from __future__ import annotations

import json
from pathlib import Path

from sandboxes.classroom import scenario

SAMPLE = Path(__file__).resolve().parent.parent / "tutorials" / "sample"


def sample_files(root: str = "") -> scenario.Files:
    files: scenario.Files = {}
    for path in sorted(SAMPLE.rglob("*")):
        if path.is_file():
            mode = 0o100755 if path.stat().st_mode & 0o100 else 0o100644
            files[root + path.relative_to(SAMPLE).as_posix()] = (mode, path.read_bytes())
    return files


def problems(found: scenario.Scenario | None) -> list[tuple[str, int | None, str]]:
    assert found is not None
    return [(p.file, p.line, p.level) for p in found.problems]


def test_the_sample_reads_cleanly() -> None:
    found = scenario.read(sample_files(), "/files")
    assert found is not None and found.valid and found.problems == []
    assert found.title == "Shell basics"
    assert [s.title for s in found.steps] == ["Write a greeting", "Say it louder", "Use the helper"]
    assert [s.index for s in found.steps] == [1, 2, 3]
    assert found.intro is not None and found.intro.background
    assert found.finish is not None and found.finish.index == 4
    assert found.unsupported == []
    step1 = found.steps[0]
    assert [a.as_dict() for a in step1.actions] == [
        {"index": 0, "kind": "exec", "code": "echo hello > greeting.txt", "interrupt": False}
    ]
    assert "[`echo hello > greeting.txt`](#tutorial-action-0)" in step1.markdown
    assert "{{" not in step1.markdown
    # Images relative to the step's file point at the tutorial's files.
    assert "(/files/images/steps.png)" in step1.markdown
    step2 = found.steps[1]
    assert [(a.kind, a.code, a.interrupt) for a in step2.actions] == [
        ("exec", "tr a-z A-Z < greeting.txt > loud.txt", False),
        ("exec", "sleep 1000", False),
        ("exec", "cat loud.txt", True),
        ("copy", "tr a-z A-Z < greeting.txt > loud.txt", False),
    ]
    assert "```tutorial-action-1\ntr a-z A-Z < greeting.txt > loud.txt\n```\n" in step2.markdown
    assert [(a.path, a.target, a.executable) for a in found.assets] == [
        ("count-lines.sh", "~/bin", True)
    ]


def test_a_tutorial_folder_or_none() -> None:
    found = scenario.read(sample_files("tutorial/"))
    assert found is not None and found.valid and found.root == "tutorial/"
    assert scenario.read({"main.py": (0o100644, b"print(1)\n")}) is None


def test_broken_json_names_its_line() -> None:
    files = sample_files()
    files["index.json"] = (0o100644, b'{\n  "title": "x",\n  "details": {\n    "steps": [,]\n}\n')
    found = scenario.read(files)
    assert found is not None and not found.valid
    assert problems(found) == [("index.json", 4, "error")]
    assert "not valid JSON" in found.problems[0].message


def test_missing_files_and_escapes_name_file_and_line() -> None:
    files = sample_files()
    del files["step2/text.md"]
    del files["step3/verify.sh"]
    index = json.loads(files["index.json"][1])
    index["details"]["finish"]["text"] = "../../etc/passwd"
    files["index.json"] = (0o100644, json.dumps(index, indent=2).encode())
    found = scenario.read(files)
    assert found is not None and not found.valid
    text = files["index.json"][1].decode().splitlines()
    messages = {p.message: p for p in found.errors}
    missing = [m for m in messages if "does not exist" in m]
    assert len(missing) == 2
    for message in missing:
        line = messages[message].line
        assert line is not None and (
            "step2/text.md" in text[line - 1] or "step3/verify.sh" in text[line - 1]
        )
    assert any("outside the tutorial's folder" in m for m in messages)


def test_unknown_annotations_not_executable_and_unsupported_backends() -> None:
    files = sample_files()
    files["step1/text.md"] = (0o100644, b"# One\n\n`ls`{{open}}\n\nSee {{TRAFFIC_HOST1_80}}\n")
    files["step1/verify.sh"] = (0o100644, files["step1/verify.sh"][1])
    index = json.loads(files["index.json"][1])
    index["backend"]["imageid"] = "kubernetes-kubeadm-2nodes"
    index["interface"] = {"layout": "ide"}
    files["index.json"] = (0o100644, json.dumps(index).encode())
    found = scenario.read(files)
    assert found is not None and found.valid  # warnings only: it still runs
    assert ("step1/text.md", 3, "warning") in problems(found)
    assert ("step1/text.md", 5, "warning") in problems(found)
    assert ("step1/verify.sh", 1, "warning") in problems(found)
    assert "backend image 'kubernetes-kubeadm-2nodes'" in found.unsupported
    assert "interface" in found.unsupported
    assert "the {{open}} annotation" in found.unsupported
    assert found.steps[0].actions == ()


def test_no_steps_and_wrong_types() -> None:
    found = scenario.read({"index.json": (0o100644, b'{"title": 3, "details": {"steps": []}}')})
    assert found is not None and not found.valid
    messages = " ".join(p.message for p in found.errors)
    assert '"title" must be a string' in messages and "at least one step" in messages
