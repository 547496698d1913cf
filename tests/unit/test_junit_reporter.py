"""The JUnit reporter's escaping: what XML 1.0 cannot hold becomes U+FFFD, markup stays text."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from parallelr.model import Task, TaskResult, TaskStatus
from parallelr.plugins.reporters.junit import case_element, xml_attribute, xml_text

ODD = "nul\x00 esc\x1b[0m bell\x07 surrogate\udcff nonchar\ufffe tab\t cr\r lf\n astral\U0001F600 <&>\""
# ODD as an XML parser reads it back: what XML cannot hold is U+FFFD, the rest is itself
ODD_AS_XML = ("nul\ufffd esc\ufffd[0m bell\ufffd surrogate\ufffd nonchar\ufffd tab\t cr\r lf\n"
              " astral\U0001F600 <&>\"")


def test_text_and_attributes_hold_only_xml_characters() -> None:
    assert xml_text(ODD) == ("nul\ufffd esc\ufffd[0m bell\ufffd surrogate\ufffd nonchar\ufffd tab\t cr\r lf\n"
                             " astral\U0001F600 &lt;&amp;&gt;\"")
    assert xml_attribute('a "b" <c>\n') == '"a &quot;b&quot; &lt;c&gt;&#10;"'
    assert ElementTree.fromstring(f"<x v={xml_attribute(ODD)}/>").get("v") == ODD_AS_XML
    assert xml_text(None) == ""


def test_a_failed_case_parses_and_gives_back_its_output() -> None:
    task = Task(argv=["bash", "/t/x.sh"], source="/t/x.sh", index=1)
    failed = TaskResult(task=task, status=TaskStatus.FAILED, worker_id=1, exit_code=2, duration=1.5,
                        stdout=ODD, stderr="", error_message="Exit code 2")
    element = ElementTree.fromstring(case_element(failed, "parallelr.run"))
    assert (element.tag, element.get("name"), element.get("classname"), element.get("time")) == (
        "testcase", "/t/x.sh", "parallelr.run", "1.500")
    (failure,) = list(element)
    assert (failure.tag, failure.get("type"), failure.get("message")) == (
        "failure", "FAILED", "FAILED: Exit code 2")
    # XML parsers normalise a lone CR in text to LF
    assert failure.text == xml_text(ODD).replace("&lt;", "<").replace("&gt;", ">").replace(
        "&amp;", "&").replace("\r", "\n")
