"""JUnit XML reporter: ``--junit-xml PATH`` writes one ``<testsuite>`` per run and one
``<testcase>`` per task, for CI systems that read JUnit reports.

A test case's name is the task (its file, or its arguments in arguments mode), its class name the
run (``parallelr.<run id>``), its time the task's duration. FAILED, TIMEOUT and ERROR tasks carry a
``<failure>`` with the status, the exit code and the output tail; CANCELLED ones a ``<skipped>``.

The suite's counts head the file, but are known only at the end, so the test cases are streamed
to a part file beside PATH as tasks end (nothing is held in memory), and at the end of the run the
header, the part file and the closing tags become PATH in one rename: a reader sees either no
file or a whole one. Characters XML 1.0 cannot hold (NUL, the escape of ANSI colour codes, other
control characters, lone surrogates) become U+FFFD, so the file always parses.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import socket
import time
from typing import Any, Optional

from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, TaskResult, TaskStatus
from parallelr.paths import expand_user
from parallelr.report import ReportFile, register_reporter, write_error

OPTION = "junit_xml"
REPORTER_NAME = "junit-xml-reporter"
WHAT = "JUnit XML report"
FAILURES = (TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.ERROR)
# What XML 1.0 allows: tab, LF, CR, and the planes without surrogates and U+FFFE/U+FFFF.
# Compiled on first use: its ranges take ~3 ms to compile, which every run paid at start-up
# whether or not it wrote a JUnit report.
@functools.cache
def _not_xml() -> re.Pattern:
    return re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@hookimpl
def parallelr_addoption(parser: Any) -> None:
    parser.getgroup("reports").add_argument(
        "--junit-xml", dest=OPTION, metavar="PATH",
        help="also write a JUnit XML report of the run to PATH (one testcase per task)",
    )


@hookimpl
def parallelr_configure(config: Any) -> None:
    path = config.request.option(OPTION)
    if path and config.request.execute:  # a dry run runs nothing: no report
        reporter = JunitReporter(os.path.abspath(expand_user(path)))
        register_reporter(config.pluginmanager, REPORTER_NAME, reporter)


def xml_text(value: Optional[str]) -> str:
    """``value`` escaped for XML text, with what XML cannot hold as U+FFFD."""
    text = _not_xml().sub("\ufffd", value or "")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_attribute(value: Optional[str]) -> str:
    """``value`` as a quoted XML attribute (newlines and tabs kept as character references)."""
    # (xml.sax.saxutils would do, but it imports urllib.request and http.client: 15 ms of every
    # run's start-up)
    return '"' + xml_text(value).translate(_ATTRIBUTE_ESCAPES) + '"'


_ATTRIBUTE_ESCAPES = {ord('"'): "&quot;", ord("\n"): "&#10;", ord("\r"): "&#13;", ord("\t"): "&#9;"}


def case_name(result: TaskResult) -> str:
    task = result.task
    if task.arguments and task.task_file is None:  # arguments-only mode: the line is the task
        return " ".join(task.arguments)
    if task.arguments:
        return f"{task.source} {' '.join(task.arguments)}"
    return task.source


def case_element(result: TaskResult, classname: str) -> str:
    """One ``<testcase>`` element (with its newline)."""
    head = (f"<testcase name={xml_attribute(case_name(result))} classname={xml_attribute(classname)}"
            f" time=\"{max(0.0, result.duration or 0.0):.3f}\"")
    status = result.status
    if status is TaskStatus.SUCCESS:
        return head + "/>\n"
    if status is TaskStatus.CANCELLED:
        return f"{head}><skipped message={xml_attribute(result.error_message or 'cancelled')}/></testcase>\n"
    if status not in FAILURES:
        return head + "/>\n"
    # "FAILED: Exit code 3", "TIMEOUT: Timeout after 60s", "ERROR: Command not found: ..."
    reason = result.error_message or (f"Exit code {result.exit_code}" if result.exit_code is not None else "")
    summary = f"{status.value}: {reason}" if reason else status.value
    output = result.stdout or ""
    if result.stderr:
        output += ("\n" if output else "") + result.stderr
    return (f"{head}><failure message={xml_attribute(summary)} type={xml_attribute(status.value)}>"
            f"{xml_text(output)}</failure></testcase>\n")


class JunitReporter:
    """The JUnit XML report of one run, at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.part_path = f"{path}.part-{os.getpid()}"
        self._part: Optional[ReportFile] = None
        self._classname = "parallelr"
        self._started = 0.0
        self.tests = self.failures = self.skipped = 0

    @hookimpl(trylast=True)
    def parallelr_run_start(self, run: RunInfo) -> None:
        self._classname = f"{run.app_name}.{run.run_id or run.timestamp}"
        self._started = run.started_at
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):  # named as the user gave it, not as the part file
            raise write_error(WHAT, self.path, FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)))
        self._part = ReportFile(self.part_path, WHAT)

    @hookimpl(trylast=True)
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        if self._part is None:
            return
        self.tests += 1
        if result.status in FAILURES:
            self.failures += 1
        elif result.status is TaskStatus.CANCELLED:
            self.skipped += 1
        self._part.write(case_element(result, self._classname))

    @hookimpl(trylast=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        part, self._part = self._part, None
        if part is None:
            return
        part.close()
        elapsed = max(0.0, time.time() - self._started)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._started))
        name = xml_attribute(f"{run.app_name} {run.command_template}".strip())
        counts = (f'tests="{self.tests}" failures="{self.failures}" errors="0" skipped="{self.skipped}"'
                  f' time="{elapsed:.3f}"')
        building = f"{self.path}.new-{os.getpid()}"
        try:
            with open(building, "w", encoding="utf-8") as out:
                out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
                out.write(f"<testsuites {counts}>\n")
                out.write(f"<testsuite name={name} {counts} timestamp=\"{stamp}\""
                          f" hostname={xml_attribute(socket.gethostname())}>\n")
                with open(self.part_path, encoding="utf-8") as cases:
                    shutil.copyfileobj(cases, out)
                out.write("</testsuite>\n</testsuites>\n")
            os.replace(building, self.path)
        except OSError as exc:
            raise write_error(WHAT, self.path, exc) from None
        finally:
            for leftover in (building, self.part_path):
                if os.path.exists(leftover):
                    os.unlink(leftover)
