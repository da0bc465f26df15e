"""Reports of a gate: JUnit XML for CI systems, a Markdown summary, and writing them."""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET

from stressor.gate import GateResult
from stressor.reports import format_table
from stressor.summary import quantiles

# Characters that XML 1.0 does not allow; a follower's error message may contain them.
_INVALID_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

JUNIT_CLASSNAME = "stressor.gate"


def _xml_text(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def junit_xml(result: GateResult) -> bytes:
    """Return the gate as JUnit XML: one test suite, one test case per target and check.

    Each failure carries the message and, when a cycle shows the failure, the
    command that replays it. The summary table goes to the suite's ``system-out``.
    """
    document = result.report.document
    tests = str(len(result.cases))
    failures = str(len(result.failures))
    seconds = f"{result.duration:.3f}"
    name = f"stressor gate {result.scenario_path}" if result.scenario_path else "stressor gate"
    counts = {"tests": tests, "failures": failures, "errors": "0", "skipped": "0", "time": seconds}
    root = ET.Element("testsuites", {"name": "stressor gate", **counts})
    suite = ET.SubElement(
        root, "testsuite", {"name": name, **counts, "timestamp": str(document["started_at"])}
    )
    properties = ET.SubElement(suite, "properties")
    for key in ("seed", "stressor_version", "interrupted"):
        ET.SubElement(properties, "property", name=key, value=str(document[key]).lower())
    if result.scenario_path:
        ET.SubElement(properties, "property", name="scenario", value=result.scenario_path)

    for case in result.cases:
        element = ET.SubElement(
            suite,
            "testcase",
            classname=JUNIT_CLASSNAME,
            name=_xml_text(f"{case.target}: {case.name}"),
        )
        if case.passed:
            continue
        lines = [case.message]
        if case.source:
            lines.append(f"declared in {case.source}")
        if case.replay:
            lines.append(f"replay: {case.replay}")
        failure = ET.SubElement(element, "failure", message=_xml_text(case.message), type=case.kind)
        failure.text = _xml_text("\n".join(lines))
    system_out = ET.SubElement(suite, "system-out")
    system_out.text = _xml_text(format_table(result.report.summaries, result.report.problems))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _cell(text: str) -> str:
    """Return ``text`` safe for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_summary(result: GateResult) -> str:
    """Return the gate as Markdown for a CI job to post: verdict, checks and failures."""
    document = result.report.document
    cycles = sum(summary.cycles for summary in result.report.summaries.values())
    verdict = "passed" if result.passed else "FAILED"
    scenario = f"`{result.scenario_path}`, " if result.scenario_path else ""
    lines = [
        f"## stressor gate {verdict}",
        "",
        f"Scenario {scenario}seed {document['seed']}: {cycles} cycles in"
        f" {result.duration:.1f} s, stressor {document['stressor_version']}."
        f" {len(result.failures)} of {len(result.cases)} checks failed.",
        "",
        "| target | check | measured | result |",
        "| --- | --- | --- | --- |",
    ]
    for case in result.cases:
        outcome = "pass" if case.passed else "**FAIL**"
        lines.append(
            f"| {_cell(case.target)} | {_cell(case.name)} | {_cell(case.message)} | {outcome} |"
        )
    if result.failures:
        lines += ["", "### Failures", ""]
        for case in result.failures:
            lines.append(f"- **{_cell(case.target)}: {_cell(case.name)}**: {case.message}")
            if case.replay:
                lines.append(f"  replay: `{case.replay}`")
    lines += ["", "### Cycles per target", ""]
    lines += _counts_table(result)
    return "\n".join(lines) + "\n"


def _counts_table(result: GateResult) -> list[str]:
    header = (
        "| target | cycles | ok | hang | lost | duplicate | reorder | torn | crash | window hits"
    )
    lines = [header + " | exit p99 (ms) |", "|" + " --- |" * 11]
    for name, summary in result.report.summaries.items():
        exit_p99 = quantiles(summary.exit_latencies)["p99"]
        exit_ms = "-" if exit_p99 is None else f"{exit_p99 * 1000:.2f}"
        outcomes = summary.outcomes
        cells = [
            _cell(name),
            str(summary.cycles),
            *(str(outcomes.get(key, 0)) for key in ("ok", "hang", "lost", "duplicate")),
            *(str(outcomes.get(key, 0)) for key in ("reorder", "torn", "crash")),
            str(summary.window_hits),
            exit_ms,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, so a CI job never reads half a report."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".stressor-gate-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
